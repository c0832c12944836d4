"""netwatch.sensor."""
