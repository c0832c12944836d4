"""Reports for people: a self-contained HTML page and a Markdown summary of netwatch events."""
