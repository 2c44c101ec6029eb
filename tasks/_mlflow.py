"""MLflow lineage for the flow: one parent run per flow run, child runs nested under it.

Training stages nest themselves (the trainer reads WMTP_PARENT_RUN_ID, see wmtp_core.tracking.mlflow_backend);
the eval and upload steps log their own child runs through `child_run`. The store is the trainer's: the config
default, $MLFLOW_TRACKING_URI, or sqlite under storage/mlflow.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from wmtp_core.tracking.mlflow_backend import PARENT_ENV, artifact_root_for, resolve_tracking_uri

__all__ = ["PARENT_ENV", "client", "start_parent", "child_run", "set_tags", "log_metrics", "finish", "run_url"]


def metric_name(name: str) -> str:
    """MLflow-legal metric name: `pass@1` -> `pass_at_1`."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", name.replace("@", "_at_"))


def _metrics(metrics: dict[str, float], now: int) -> list[Metric]:
    return [Metric(metric_name(k), float(v), now, 0) for k, v in sorted(metrics.items())]


def client() -> MlflowClient:
    uri = resolve_tracking_uri(None)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def start_parent(experiment_name: str, run_name: str, tags: dict[str, str]) -> str:
    c = client()
    found = c.get_experiment_by_name(experiment_name)
    uri = resolve_tracking_uri(None)
    experiment_id = found.experiment_id if found else c.create_experiment(
        experiment_name, artifact_location=artifact_root_for(uri))
    return c.create_run(experiment_id, run_name=run_name, tags={"mlflow.runName": run_name, **tags}).info.run_id


def child_run(parent_id: str | None, run_name: str, metrics: dict[str, float], params: dict[str, Any],
              tags: dict[str, str]) -> str | None:
    """A finished child run holding `metrics`/`params`; None when there is no parent (tracking off)."""
    if not parent_id:
        return None
    c = client()
    experiment_id = c.get_run(parent_id).info.experiment_id
    run = c.create_run(experiment_id, run_name=run_name,
                       tags={"mlflow.runName": run_name, "mlflow.parentRunId": parent_id, **tags})
    now = int(time.time() * 1000)
    c.log_batch(run.info.run_id, metrics=_metrics(metrics, now),
                params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())])
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in sorted(tags.items())])


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    now = int(time.time() * 1000)
    client().log_batch(run_id, metrics=_metrics(metrics, now))


def finish(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)


def run_url(run_id: str) -> str:
    """Where to find the run: the server URL for http stores, else the `mlflow ui` hint."""
    uri = resolve_tracking_uri(None)
    c = client()
    experiment_id = c.get_run(run_id).info.experiment_id
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
