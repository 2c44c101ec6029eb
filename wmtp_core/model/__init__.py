"""Model wrappers: the Meta-layout MTP adapter (artifact loading/saving) and the value head."""
