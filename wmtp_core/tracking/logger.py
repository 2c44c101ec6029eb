"""Logger protocol and the console / fan-out implementations; `make_logger` picks backends from the config."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import IO, Any, Protocol

from wmtp_core.config import ResolvedConfig


class Logger(Protocol):
    run_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def close(self, status: str = "FINISHED") -> None: ...


def finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalar float metrics only; tensors are converted, non-numeric values dropped by the caller's choice."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool | int | float):
            out[key] = float(value)
    return out


class ConsoleLogger:
    """Prints metrics every `every` steps (the progress bar shows the rest)."""

    run_id: str | None = None

    def __init__(self, every: int = 1, stream: IO[str] | None = None) -> None:
        self.every = every
        self.stream = stream or sys.stderr

    def log_params(self, params: dict[str, Any]) -> None:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if step % self.every:
            return
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(finite_metrics(metrics).items()))
        print(f"[step {step}] {shown}", file=self.stream)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        print(f"artifact: {path}", file=self.stream)

    def set_tags(self, tags: dict[str, str]) -> None:
        return None

    def close(self, status: str = "FINISHED") -> None:
        self.stream.flush()


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


class MultiLogger:
    """Fans every call out to several loggers; `run_id` is the first backend's that has one."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    @property
    def run_id(self) -> str | None:
        return next((lg.run_id for lg in self.loggers if lg.run_id), None)

    def log_params(self, params: dict[str, Any]) -> None:
        for lg in self.loggers:
            lg.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        clean = finite_metrics(metrics)
        for lg in self.loggers:
            lg.log_metrics(clean, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        for lg in self.loggers:
            lg.log_artifact(path, artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        for lg in self.loggers:
            lg.set_tags(tags)

    def close(self, status: str = "FINISHED") -> None:
        for lg in self.loggers:
            lg.close(status)


def make_logger(cfg: ResolvedConfig, run_name: str, console_every: int | None = None) -> MultiLogger:
    """Console always (quiet when a progress bar shows); MLflow when `logging.mlflow` is on."""
    every = console_every if console_every is not None else (10**9 if cfg.train.progress_bar else cfg.train.log_every)
    loggers: list[Logger] = [ConsoleLogger(every=every)]
    if cfg.logging.mlflow:
        from wmtp_core.tracking.mlflow_backend import MlflowLogger

        loggers.append(MlflowLogger.start(cfg.logging.experiment_name, run_name, cfg.logging.tracking_uri))
    return MultiLogger(loggers)
