"""WMTP core library: pure functions, no prefect/mlflow at import time."""
