"""See ``paddle/__init__.py``: only ``launch`` exists."""
