"""MLflow backend for the Logger protocol (mlflow is imported only here, inside functions).

Tracking URI: the config's `logging.tracking_uri`, else $MLFLOW_TRACKING_URI, else
sqlite:///<storage>/mlflow/mlflow.db with artifacts under <storage>/mlflow/artifacts. A sqlite store gets its
artifact root next to the database file. $WMTP_PARENT_RUN_ID nests the run under that parent (same experiment).

A failing tracking call (server unreachable, refused, unknown parent run) raises `TrackingError`: one line naming
the URI with its userinfo masked (`http://***@host`), the action and the redacted first line of the cause, with
no chained traceback (the cause's text carries the URI with its password). The CLI prints it without a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from wmtp_core import paths
from wmtp_core.secrets import redact

PARENT_ENV = "WMTP_PARENT_RUN_ID"
MAX_PARAM_CHARS = 6000
BATCH = 900  # MLflow caps a log_batch at 1000 entries


class TrackingError(RuntimeError):
    """A tracking-backend call failed; the message names the redacted URI, never a credential."""


@contextlib.contextmanager
def tracking_errors(uri: str, action: str) -> Iterator[None]:
    """Turn MLflow / connection failures into a one-line `TrackingError` (no chained cause: it holds the URI)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as exc:  # requests' exceptions are OSErrors
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise TrackingError(f"MLflow tracking at {redact(uri)}: {action} failed: {redact(lines[0])[:500]}") from None


def _guarded(action: str) -> Callable:
    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def call(self: MlflowLogger, *args: Any, **kwargs: Any) -> Any:
            with tracking_errors(self.uri, action):
                return method(self, *args, **kwargs)
        return call
    return wrap


def default_tracking_uri() -> str:
    return f"sqlite:///{paths.STORAGE / 'mlflow' / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def artifact_root_for(uri: str) -> str | None:
    """Artifact root for a local sqlite store: <db dir>/artifacts as a file URI; servers choose their own."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    db_path = Path(uri[len("sqlite:///"):])
    root = db_path.parent / "artifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve().as_uri()


def _ensure_sqlite_dir(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


class MlflowLogger:
    """One MLflow run driven through MlflowClient (no global active-run state)."""

    def __init__(self, client: Any, run_id: str, uri: str = "") -> None:
        self.client = client
        self.run_id: str | None = run_id
        self.uri = uri
        self._closed = False

    @classmethod
    def start(cls, experiment_name: str, run_name: str, tracking_uri: str | None = None) -> MlflowLogger:
        from mlflow.tracking import MlflowClient

        uri = resolve_tracking_uri(tracking_uri)
        _ensure_sqlite_dir(uri)
        with tracking_errors(uri, f"starting run {run_name!r}"):
            client = MlflowClient(tracking_uri=uri)
            parent = os.environ.get(PARENT_ENV) or None
            tags = {"mlflow.runName": run_name}
            if parent:
                experiment_id = client.get_run(parent).info.experiment_id
                tags["mlflow.parentRunId"] = parent
            else:
                experiment_id = cls._experiment_id(client, experiment_name, uri)
            run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        return cls(client, run.info.run_id, uri)

    @staticmethod
    def _experiment_id(client: Any, name: str, uri: str) -> str:
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(name, artifact_location=artifact_root_for(uri))

    @_guarded("logging params")
    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(params.items())]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + BATCH])

    @_guarded("logging metrics")
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, metrics=items[i:i + BATCH])

    @_guarded("logging an artifact")
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    @_guarded("setting tags")
    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in sorted(tags.items())])

    @_guarded("ending the run")
    def close(self, status: str = "FINISHED") -> None:
        if not self._closed:
            self.client.set_terminated(self.run_id, status=status)
            self._closed = True
