"""Datasets: source readers, raw/processed schemas, preparation, splits, validation, loading and collation."""
