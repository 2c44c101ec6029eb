"""Readers that turn each shipped source format into raw-schema rows (see wmtp_core.data.schema)."""
