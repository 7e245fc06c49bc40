"""Files: atomic writes and safe loading, the training checkpoint, run folders and their locks."""
