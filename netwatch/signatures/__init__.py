"""netwatch.signatures."""
