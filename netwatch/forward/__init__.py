"""netwatch.forward."""
