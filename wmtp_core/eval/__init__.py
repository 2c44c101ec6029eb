"""Evaluation: sandboxed execution, per-dataset checkers, pass@k, generation and labelling."""
