"""VESSL infrastructure: run specs, the lazily imported `vessl` SDK, run polling/logs/termination, storage sync.

Nothing here imports `vessl` (or prefect/mlflow) at module level; see `sdk.get_sdk`.
"""
