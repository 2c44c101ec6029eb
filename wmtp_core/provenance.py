"""Provenance: what produced an artifact, written next to it and printed by `wmtp provenance PATH`.

A training run directory gets `provenance.json` (written by the flow's training step) holding the dataset
manifest SHA256, the resolved-config hash, the git commit + dirty flag, the input model's weight SHA256 (micro or
base) and, through that model's metadata.json, the base it was sliced from, plus the Prefect flow-run id and the
MLflow run ids. The same keys are set as MLflow tags on the stage runs (`wmtp.*`, `prefect.*`).
`chain(path)` walks from any artifact (a model dir, a run dir, a file inside either) back to the source checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wmtp_core.io import atomic_write_json, read_json

PROVENANCE_NAME = "provenance.json"
MAX_DEPTH = 8


def write_provenance(run_dir: Path, record: dict[str, Any]) -> Path:
    return Path(atomic_write_json(Path(run_dir) / PROVENANCE_NAME, record, sort_keys=True))


def run_record(*, experiment: str, stage: str, config_hash: str | None, dataset_manifest: Path,
               dataset_manifest_sha256: str, input_model_dir: Path, reference_model_dir: Path | None,
               output_model_dir: Path | None, prefect_flow_run_id: str | None, prefect_task_run_id: str | None,
               mlflow_run_id: str | None, mlflow_parent_run_id: str | None) -> dict[str, Any]:
    """The provenance of one stage run; model SHA256s and git state are read here, at the time of the run."""
    from wmtp_core.tracking.provenance import git_state, model_weights_sha256

    git = git_state()
    record = {
        "experiment": experiment, "stage": stage, "config_hash": config_hash,
        "dataset_manifest": str(dataset_manifest), "dataset_manifest_sha256": dataset_manifest_sha256,
        "input_model_dir": str(input_model_dir), "input_model_sha256": model_weights_sha256(input_model_dir),
        "output_model_dir": str(output_model_dir) if output_model_dir else None,
        "output_model_sha256": model_weights_sha256(output_model_dir) if output_model_dir else None,
        "git_commit": git["git.commit"], "git_dirty": git["git.dirty"],
        "prefect_flow_run_id": prefect_flow_run_id, "prefect_task_run_id": prefect_task_run_id,
        "mlflow_run_id": mlflow_run_id, "mlflow_parent_run_id": mlflow_parent_run_id,
    }
    if reference_model_dir is not None:
        record["reference_model_dir"] = str(reference_model_dir)
        record["reference_model_sha256"] = model_weights_sha256(reference_model_dir)
    return record


def mlflow_tags(record: dict[str, Any]) -> dict[str, str]:
    """The record as MLflow tags (`wmtp.provenance.*`, `prefect.flow_run_id`)."""
    tags = {f"wmtp.provenance.{k}": str(v) for k, v in record.items() if v is not None}
    if record.get("prefect_flow_run_id"):
        tags["prefect.flow_run_id"] = str(record["prefect_flow_run_id"])
    return tags


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, missing=lambda p: FileNotFoundError(f"{p}: not found"), expect=dict)


def _find_upwards(start: Path, name: str) -> Path | None:
    for folder in [start, *start.parents][:4]:
        if (folder / name).is_file():
            return folder / name
    return None


def _model_entry(model_dir: Path) -> dict[str, Any]:
    from wmtp_core.tracking.provenance import model_weights_sha256

    meta = _read_json(model_dir / "metadata.json")
    source = meta.get("source") or {}
    entry = {"artifact": "model", "path": str(model_dir), "kind": meta.get("kind"),
             "synthetic": meta.get("synthetic"), "weights_sha256": model_weights_sha256(model_dir),
             "created_at": meta.get("created_at"), "source": source.get("path"),
             "source_sha256": {k: v.get("sha256") for k, v in (source.get("files") or {}).items()}}
    derived = meta.get("derived_from") or {}
    extra = meta.get("extra") or {}
    entry.update({k: v for k, v in {"derived_from": derived.get("path") or derived.get("model_dir"),
                                    "derived_from_sha256": derived.get("sha256") or derived.get("weights_sha256"),
                                    "mlflow_run_id": extra.get("mlflow_run_id"),
                                    "config_hash": extra.get("config_hash")}.items() if v})
    return entry


def chain(path: Path) -> list[dict[str, Any]]:
    """Entries from `path` back to the source checkpoint: run provenance, then each model's metadata in turn."""
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    start = path if path.is_dir() else path.parent
    entries: list[dict[str, Any]] = []
    record_path = _find_upwards(start, PROVENANCE_NAME)
    next_model: Path | None = None
    if record_path is not None:
        record = _read_json(record_path)
        entries.append({"artifact": "run", "path": str(record_path.parent), **record})
        next_model = Path(record["output_model_dir"]) if record.get("output_model_dir") else None
    meta_path = _find_upwards(start, "metadata.json")
    if meta_path is not None and (next_model is None or meta_path.parent != next_model):
        next_model = meta_path.parent
    seen: set[Path] = set()
    while next_model is not None and len(seen) < MAX_DEPTH and next_model not in seen:
        seen.add(next_model)
        if not (next_model / "metadata.json").is_file():
            entries.append({"artifact": "model", "path": str(next_model), "missing": True})
            break
        entry = _model_entry(next_model)
        entries.append(entry)
        parent = entry.get("derived_from")
        if parent is None and entries[0].get("artifact") == "run" and entry["path"] == entries[0].get(
                "output_model_dir"):
            parent = entries[0].get("input_model_dir")
        next_model = Path(parent) if parent else None
    if not entries:
        raise ValueError(f"{path}: no provenance.json or metadata.json here or in the 3 folders above")
    return entries


def format_chain(entries: list[dict[str, Any]]) -> str:
    lines = []
    for depth, entry in enumerate(entries):
        pad = "  " * depth
        head = f"{pad}{'└─ ' if depth else ''}{entry['artifact']}: {entry['path']}"
        lines.append(head)
        for key, value in entry.items():
            if key in ("artifact", "path") or value in (None, "", {}):
                continue
            lines.append(f"{pad}     {key}: {value}")
    return "\n".join(lines)
