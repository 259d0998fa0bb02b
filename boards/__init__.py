"""boards: see README.md."""
