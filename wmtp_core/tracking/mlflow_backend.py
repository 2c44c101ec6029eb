"""MLflow backend for the Logger protocol and the flow's run lineage (mlflow is imported only here, inside functions).

Tracking URI: the config's `logging.tracking_uri`, else $MLFLOW_TRACKING_URI, else
sqlite:///<storage>/mlflow/mlflow.db with artifacts under <storage>/mlflow/artifacts. A sqlite store gets its
artifact root next to the database file. $WMTP_PARENT_RUN_ID nests the run under that parent (same experiment).

Lineage: one parent run per flow run (`start_parent`); training stages nest themselves through $WMTP_PARENT_RUN_ID,
the eval and upload steps log finished child runs through `child_run`.

A failing tracking call (server unreachable, refused, unknown parent run) raises `TrackingError`: one line naming
the URI with its userinfo masked (`http://***@host`), the action and the redacted first line of the cause, with
no chained traceback (the cause's text carries the URI with its password). The CLI prints it without a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
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


def _store_errors(action: str) -> Callable:
    """`tracking_errors` on the resolved store for a module-level lineage function."""
    def wrap(function: Callable) -> Callable:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            with tracking_errors(resolve_tracking_uri(None), action):
                return function(*args, **kwargs)
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


def experiment_id(client: Any, name: str, uri: str) -> str:
    """The id of MLflow experiment `name`, created (with this store's artifact root) when missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root_for(uri))


def client() -> Any:
    """An MlflowClient on the resolved store (config default, $MLFLOW_TRACKING_URI, or sqlite under storage/)."""
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(None)
    _ensure_sqlite_dir(uri)
    return MlflowClient(tracking_uri=uri)


def metric_name(name: str) -> str:
    """MLflow-legal metric name: `pass@1` -> `pass_at_1`."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", name.replace("@", "_at_"))


def _metrics(metrics: dict[str, float], step: int = 0) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(metric_name(k), float(v), now, step) for k, v in sorted(metrics.items())]


@_store_errors("starting the parent run")
def start_parent(experiment_name: str, run_name: str, tags: dict[str, str]) -> str:
    """A new top-level run (the flow run's parent); its id."""
    c = client()
    exp = experiment_id(c, experiment_name, resolve_tracking_uri(None))
    return c.create_run(exp, run_name=run_name, tags={"mlflow.runName": run_name, **tags}).info.run_id


@_store_errors("logging a child run")
def child_run(parent_id: str | None, run_name: str, metrics: dict[str, float], params: dict[str, Any],
              tags: dict[str, str]) -> str | None:
    """A finished child run holding `metrics`/`params`; None when there is no parent (tracking off)."""
    from mlflow.entities import Param

    if not parent_id:
        return None
    c = client()
    exp = c.get_run(parent_id).info.experiment_id
    run = c.create_run(exp, run_name=run_name,
                       tags={"mlflow.runName": run_name, "mlflow.parentRunId": parent_id, **tags})
    c.log_batch(run.info.run_id, metrics=_metrics(metrics),
                params=[Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(params.items())])
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@_store_errors("setting run tags")
def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in sorted(tags.items())])


@_store_errors("logging run metrics")
def log_run_metrics(run_id: str, metrics: dict[str, float]) -> None:
    client().log_batch(run_id, metrics=_metrics(metrics))


@_store_errors("ending a run")
def finish_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)


@_store_errors("looking up a run")
def run_url(run_id: str) -> str:
    """Where to find the run: the server URL for http stores, else the `mlflow ui` hint."""
    uri = resolve_tracking_uri(None)
    exp = client().get_run(run_id).info.experiment_id
    base = redact(uri).rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{exp}/runs/{run_id}"


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
                exp = client.get_run(parent).info.experiment_id
                tags["mlflow.parentRunId"] = parent
            else:
                exp = experiment_id(client, experiment_name, uri)
            run = client.create_run(exp, run_name=run_name, tags=tags)
        return cls(client, run.info.run_id, uri)

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
