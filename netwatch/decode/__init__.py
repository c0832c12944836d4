"""netwatch.decode."""
