"""netwatch.capture."""
