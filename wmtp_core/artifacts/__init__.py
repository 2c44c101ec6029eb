"""Model artifacts: layout of storage/models/<name>/, conversion, micro-model building, integrity checks."""
