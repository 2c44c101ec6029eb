"""Prefect tasks: thin wrappers over wmtp_core functions."""
