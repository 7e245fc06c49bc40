"""modeconn's version: one place, below every layer, so provenance records can name it."""
__version__ = "0.1.0"
