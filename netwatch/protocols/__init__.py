"""Protocol parsers: bytes in, plain data out. None of them logs, prints or raises on wire data."""
