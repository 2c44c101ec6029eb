"""Small typed results the tasks return (paths, SHA256s, MLflow run ids, metric summaries) — never tensors.

Paths are `Path` objects on purpose: when a result is passed to a downstream task, the cache policy hashes the
files it names, so a changed upstream artifact always invalidates the steps that consume it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ModelArtifact:
    """A model directory in the project layout (converted base, micro model, reference, or a trained export)."""

    model_dir: Path
    weights_sha256: dict[str, str]  # weight file name -> SHA256 (from metadata.json)
    synthetic: bool
    message: str = ""  # what the step did ("converted …", "already converted …")


@dataclass(frozen=True)
class DatasetsArtifact:
    """Processed + validated datasets and the manifest that pins them."""

    datasets_root: Path
    manifest_path: Path
    manifest_sha256: str  # the manifest pins every processed file's SHA256
    counts: dict[str, dict[str, int]]  # source -> rows in / kept / rejected / per split


@dataclass(frozen=True)
class StageResult:
    """One training stage run through an infrastructure block (parsed from the stage's result.json).

    A remote run (a block whose job result has an `export_url`, i.e. VesslJob) keeps its outputs on its export
    volume: `output_dir` is then the local copy of its records under `<runs_dir>/<job name>`, `model_dir` /
    `value_head_path` the local, SHA256-checked copies fetched after Stage 2 (None after Stage 1, whose model is
    not needed here), `checkpoint` None, and `export_url` + `export_checkpoint` say where the last checkpoint is
    for the next stage, which imports that volume."""

    stage: str  # "stage1" | "stage2"
    experiment: str
    output_dir: Path
    model_dir: Path | None  # exported model (stage2) or None
    value_head_path: Path | None  # stage1 / verifiable stage2
    checkpoint: Path | None  # this stage's last checkpoint on this machine (what the next stage resumes from)
    mlflow_run_id: str | None
    final_metrics: dict[str, float]
    weights_sha256: str | None
    infrastructure: str  # "local" or the VESSL block name
    export_url: str = ""  # remote: volume:// URL of the run's export mount; local: ""
    export_checkpoint: str | None = None  # remote: the last checkpoint's path relative to that export mount


@dataclass(frozen=True)
class EvalSummary:
    dataset: str
    model_dir: Path
    pass_at_k: dict[str, float]  # "pass@1" -> value
    n_problems: int
    n_samples: int
    samples_path: Path | None
    results_path: Path | None
    mlflow_run_id: str | None = None
    speculative: bool = False  # which decoder ran: self-speculative (greedy, extra heads) or plain


@dataclass(frozen=True)
class UploadReceipt:
    target: str  # local directory or volume:// URI
    manifest_path: Path | None  # the target's SHA256 manifest (local targets; volumes keep theirs remotely)
    files: int
    bytes: int
    skipped: int  # already present with the same SHA256


@dataclass(frozen=True)
class StepRecord:
    """How a step ended in one flow run: `Completed`, `Cached`, `Skipped` (with reason) or `Failed`."""

    step: str
    state: str
    message: str = ""


@dataclass(frozen=True)
class ExperimentSummary:
    experiment: str
    flow_run_id: str | None
    mlflow_parent_run_id: str | None
    steps: list[StepRecord] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    pass_at_k: dict[str, float] = field(default_factory=dict)
    model_dir: Path | None = None
    upload_target: str | None = None
    seed: int | None = None  # the training seed override (`run.seed`); None: the config's
    eval_results_path: Path | None = None  # the eval's results.jsonl (per-sample verdicts); None: not evaluated
    run_dirs: list[Path] = field(default_factory=list)  # training output dirs on this machine, Stage 1's first


def model_artifact(model_dir: Path, message: str = "") -> ModelArtifact:
    """Summarise a model directory from its metadata.json (the SHA256s were recorded when it was written)."""
    from wmtp_core.artifacts.layout import ModelLayout

    meta = ModelLayout(model_dir).read_metadata()
    weights = {name: entry["sha256"] for name, entry in meta["files"].items() if name.endswith(".safetensors")}
    return ModelArtifact(Path(model_dir), weights, bool(meta["synthetic"]), message)
