"""Export an MLflow run and its nested runs to plain files (the design's `export_mlflow_artifacts`).

    <out>/index.json                         every exported run: id, name, parent, status, folder
    <out>/<name>-<id8>/run.json              info + tags
                      params.json
                      metrics/<metric>.csv   step,timestamp,value (full history; "/" in names becomes "__")
                      loss_curves/<stage>.png  every "<stage>/…loss…" metric of that stage against step
                      artifacts/…            the run's artifacts, downloaded
mlflow and matplotlib are imported inside the functions (wmtp_core stays free of them at import time).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmtp_core.io import atomic_write_bytes, atomic_write_json, atomic_write_text

MAX_DEPTH = 4


@dataclass
class ExportReport:
    out_dir: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0


def _client(tracking_uri: str | None) -> Any:
    from mlflow.tracking import MlflowClient

    from wmtp_core.tracking.mlflow_backend import resolve_tracking_uri

    return MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))


def run_tree(client: Any, run_id: str) -> list[Any]:
    """The run, then its nested runs (depth first, oldest first)."""
    root = client.get_run(run_id)
    out, frontier = [root], [(root, 0)]
    while frontier:
        parent, depth = frontier.pop(0)
        if depth >= MAX_DEPTH:
            continue
        children = client.search_runs([parent.info.experiment_id],
                                      f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                                      order_by=["attributes.start_time ASC"])
        out += children
        frontier += [(c, depth + 1) for c in children]
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", name).strip("_") or "run"


def metric_csv(history: list[Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", "timestamp", "value"])
    for m in sorted(history, key=lambda m: (m.step, m.timestamp)):
        writer.writerow([m.step, m.timestamp, repr(float(m.value))])
    return buf.getvalue()


def stage_loss_metrics(names: list[str]) -> dict[str, list[str]]:
    """{"stage1": ["stage1/loss", "stage1/value_loss"], ...} from metric names shaped `<stage>/<name>`."""
    stages: dict[str, list[str]] = {}
    for name in sorted(names):
        stage, sep, rest = name.partition("/")
        if sep and "loss" in rest:
            stages.setdefault(stage, []).append(name)
    return stages


def loss_png(stage: str, curves: dict[str, list[tuple[int, float]]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=2, label=name)
    ax.set_title(f"{stage} losses")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def export_one(client: Any, run: Any, folder: Path) -> int:
    info, data = run.info, run.data
    files = 0
    atomic_write_json(folder / "run.json", {"run_id": info.run_id, "run_name": info.run_name,
                                            "experiment_id": info.experiment_id, "status": info.status,
                                            "start_time": info.start_time, "end_time": info.end_time,
                                            "tags": dict(data.tags)}, sort_keys=True)
    atomic_write_json(folder / "params.json", dict(data.params), sort_keys=True)
    files += 2
    histories = {name: client.get_metric_history(info.run_id, name) for name in sorted(data.metrics)}
    for name, history in histories.items():
        atomic_write_text(folder / "metrics" / f"{name.replace('/', '__')}.csv", metric_csv(history))
        files += 1
    for stage, names in stage_loss_metrics(list(histories)).items():
        curves = {n: sorted((m.step, float(m.value)) for m in histories[n]) for n in names}
        atomic_write_bytes(folder / "loss_curves" / f"{_safe(stage)}.png", loss_png(stage, curves))
        files += 1
    if client.list_artifacts(info.run_id):
        dest = folder / "artifacts"
        dest.mkdir(parents=True, exist_ok=True)
        client.download_artifacts(info.run_id, "", str(dest))
        files += sum(1 for p in dest.rglob("*") if p.is_file())
    return files


def export_run(run_id: str, out_dir: Path, tracking_uri: str | None = None) -> ExportReport:
    client = _client(tracking_uri)
    out = Path(out_dir)
    report = ExportReport(out)
    for run in run_tree(client, run_id):
        folder = out / f"{_safe(run.info.run_name or 'run')}-{run.info.run_id[:8]}"
        report.files += export_one(client, run, folder)
        report.runs.append({"run_id": run.info.run_id, "run_name": run.info.run_name,
                            "parent_run_id": run.data.tags.get("mlflow.parentRunId"), "status": run.info.status,
                            "folder": folder.name, "metrics": sorted(run.data.metrics)})
    atomic_write_text(out / "index.json", json.dumps({"root_run_id": run_id, "runs": report.runs}, indent=2) + "\n")
    return report
