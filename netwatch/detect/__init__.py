"""netwatch.detect."""
