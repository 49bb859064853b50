"""What the entry points run: the recipe of one run, its record (``metrics.json``), checkpoint safety, the errors."""
