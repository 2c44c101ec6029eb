"""Run tracking: a small Logger interface with console and (lazily imported) MLflow backends, plus plots."""
