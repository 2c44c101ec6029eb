"""Stage-to-stage handoff for the orchestration: which checkpoint a stage resumes from, where a finished stage's
last checkpoint is, and the provenance record of a stage run (the flow's training step calls these).

A local stage resumes from the upstream stage's last checkpoint on this machine; a remote stage (VESSL) imports
the upstream run's export volume at UPSTREAM_MOUNT and resumes from the checkpoint recorded there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wmtp_core.io import read_json

UPSTREAM_MOUNT = "/mnt/upstream"  # where a remote Stage 2 job sees the Stage 1 run's export volume
CHECKPOINT_REFS = "checkpoints.json"  # written by the trainer: {stage: {"path": ...}}


def recorded_checkpoint(output_dir: Path, stage: str) -> Path | None:
    """The last checkpoint of `stage` the run in `output_dir` recorded; None when it recorded none."""
    refs = Path(output_dir) / CHECKPOINT_REFS
    if not refs.is_file():
        return None
    path = (read_json(refs, expect=dict).get(stage) or {}).get("path")
    return Path(path) if path else None


def resume_point(upstream_stage: str, checkpoint: Path | None, export_url: str = "",
                 export_checkpoint: str | None = None) -> tuple[str | None, dict[str, str]]:
    """(`resume` of the next job, volume imports) for a stage that continues from an upstream stage."""
    if export_url:  # remote: import the upstream run's export volume, resume from the checkpoint in it
        if not export_checkpoint:
            raise ValueError(f"{upstream_stage} run {export_url} recorded no checkpoint to resume from")
        return f"{UPSTREAM_MOUNT}/{export_checkpoint}", {UPSTREAM_MOUNT: export_url}
    return (str(checkpoint) if checkpoint else None), {}


def record_stage_provenance(output_dir: Path, **run: Any) -> dict[str, Any]:
    """provenance.json in the run dir (when it is on this machine) and the same record as tags on the stage's
    MLflow run (when it has one); `run` holds the keyword arguments of wmtp_core.provenance.run_record."""
    from wmtp_core.provenance import mlflow_tags, run_record, write_provenance

    record = run_record(**run)
    if Path(output_dir).is_dir():
        write_provenance(Path(output_dir), record)
    if run.get("mlflow_run_id"):
        from wmtp_core.tracking.mlflow_backend import set_run_tags

        set_run_tags(run["mlflow_run_id"], mlflow_tags(record))
    return record
