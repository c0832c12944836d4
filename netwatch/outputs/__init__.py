"""netwatch.outputs."""
