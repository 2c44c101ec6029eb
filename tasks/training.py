"""Steps: Stage 1 / Stage 2 training through an infrastructure block (LocalProcess here, VesslJob remotely).

The block runs `wmtp train …` (wmtp_core.train.run.run_training) and returns the small result.json it wrote.
Stage 2 of the verifiable experiment resumes from Stage 1's last checkpoint (`--resume PATH`): the trainer then
finds Stage 1 complete and runs Stage 2 with the pretrained value head.

Remote runs (the job result has an `export_url`: VesslJob) keep their outputs on their export volume. After each
one, its small records (result/checkpoints/metrics JSON, resolved config) are downloaded to
`<runs_dir>/<job name>`; after Stage 2 also its exported model and value head, each file checked against the
SHA256 in the model's metadata.json / result.json, so evaluate and upload work on the local copy. A remote
Stage 2 imports the Stage 1 run's export volume at UPSTREAM_MOUNT and resumes from the checkpoint there.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from deployments.blocks import JobFailed
from tasks import _mlflow
from tasks._task import wmtp_task
from tasks.results import DatasetsArtifact, ModelArtifact, StageResult


def load_infrastructure(name: str, runs_dir: str) -> Any:
    """`local` -> a LocalProcess writing under runs_dir; `<type-slug>/<name>` -> that saved block; a bare name ->
    the saved `wmtp-vessl-job` block of that name."""
    from prefect.blocks.core import Block

    from deployments.blocks import LocalProcess, VesslJob

    if name == "local":
        return LocalProcess(runs_dir=runs_dir)
    if "/" in name:
        return Block.load(name)
    return VesslJob.load(name)


UPSTREAM_MOUNT = "/mnt/upstream"  # where a remote Stage 2 job sees the Stage 1 run's export volume


class OutputsNotFetched(RuntimeError):
    """A remote stage finished, but its outputs could not be brought to this machine (not retried: a retry of the
    step would train again)."""


def _path(value: Any) -> Path | None:
    return Path(value) if value else None


def _last_checkpoint(output_dir: Path, stage: str) -> Path | None:
    refs = output_dir / "checkpoints.json"  # written by the trainer: {stage: {"path": ...}}
    if not refs.is_file():
        return None
    return _path(json.loads(refs.read_text(encoding="utf-8")).get(stage, {}).get("path"))


def _resume(upstream: StageResult | None) -> tuple[list[str], dict[str, str]]:
    """(`--resume` arguments, volume imports) for a stage that continues from `upstream`."""
    if upstream is None:
        return [], {}
    if upstream.export_url:  # remote: import the upstream run's export volume, resume from the checkpoint in it
        if not upstream.export_checkpoint:
            raise ValueError(f"{upstream.stage} run {upstream.export_url} recorded no checkpoint to resume from")
        return (["--resume", f"{UPSTREAM_MOUNT}/{upstream.export_checkpoint}"],
                {UPSTREAM_MOUNT: upstream.export_url})
    return (["--resume", str(upstream.checkpoint)] if upstream.checkpoint else []), {}


@wmtp_task("train-stage", kind="remote", cache_exclude=("job_name", "env"),
           give_up_on=(JobFailed, OutputsNotFetched))
def train_stage(stage: str, experiment: str, infrastructure: str, runs_dir: str, train_args: list[str],
                model: ModelArtifact, datasets: DatasetsArtifact, reference: ModelArtifact | None,
                upstream: StageResult | None, job_name: str, env: dict[str, str]) -> StageResult:
    """Run one stage. `model`, `datasets`, `reference` and `upstream` are here so the cache key follows their
    contents; `train_args` already point the trainer at them."""
    block = load_infrastructure(infrastructure, runs_dir)
    root = block.output_dir("")  # LocalProcess: its runs_dir; VesslJob: the export mount (as the job sees it)
    resume, imports = _resume(upstream)
    command = block.train_command([*train_args, *resume, "--run-name", job_name, "--set", f"run.output_root={root}"])
    job = block.submit(command, env=env, result_path=f"{root}/{job_name}/result.json", name=job_name,
                       **({"imports": imports} if imports else {}))
    r = job.result
    metrics = {k: float(v) for k, v in (r.get("final_metrics") or {}).items() if isinstance(v, int | float)}
    export_url = getattr(job, "export_url", "")
    if export_url:
        fetched = _fetch_remote(block, export_url, r, stage, job_name, Path(runs_dir))
        result = StageResult(stage, experiment, fetched.output_dir, fetched.model_dir, fetched.value_head_path,
                             None, r.get("mlflow_run_id"), metrics, r.get("weights_sha256"), infrastructure,
                             export_url, fetched.checkpoint)
    else:
        out = Path(r["output_dir"])
        result = StageResult(stage, experiment, out, _path(r.get("model_dir")), _path(r.get("value_head_path")),
                             _last_checkpoint(out, stage), r.get("mlflow_run_id"), metrics, r.get("weights_sha256"),
                             infrastructure)
    _record_provenance(result, r.get("config_hash"), model, datasets, reference, env.get(_mlflow.PARENT_ENV))
    return result


class _Fetched(NamedTuple):
    output_dir: Path  # <runs_dir>/<job name>: the local copy
    model_dir: Path | None
    value_head_path: Path | None
    checkpoint: str | None  # the stage's last checkpoint, relative to the export mount


def _fetch_remote(block: Any, export_url: str, r: dict, stage: str, job_name: str, runs_dir: Path) -> _Fetched:
    """Download a remote stage's records (and after Stage 2 its model + value head, SHA256-checked) from
    `<export_url>/<job_name>` to `<runs_dir>/<job_name>`; raise OutputsNotFetched naming the volume path."""
    from wmtp_core.io import read_json
    from wmtp_core.tracking.provenance import model_weights_sha256

    source, local = f"{export_url.rstrip('/')}/{job_name}", runs_dir / job_name
    what = "records"
    try:
        remote_out = PurePosixPath(r["output_dir"])  # the path the job saw: <export mount>/<job_name>
        if remote_out.name != job_name:
            raise ValueError(f"result.json output_dir {remote_out} is not <export mount>/{job_name}")

        def rel(path: str) -> str:
            return PurePosixPath(path).relative_to(remote_out).as_posix()

        head_rel = rel(r["value_head_path"]) if r.get("value_head_path") else None
        block.fetch_export(source, local, include=lambda f: "/" not in f and f != head_rel)
        refs = read_json(local / "checkpoints.json", expect=dict) if (local / "checkpoints.json").is_file() else {}
        last = (refs.get(stage) or {}).get("path")
        checkpoint = f"{job_name}/{rel(last)}" if last else None
        if stage != "stage2" or not r.get("model_dir"):  # only the final stage's model is evaluated / uploaded
            return _Fetched(local, None, None, checkpoint)
        model_rel = rel(r["model_dir"])
        what = f"model {model_rel}/"
        block.fetch_export(source, local, include=lambda f: f == f"{model_rel}/metadata.json")
        meta = read_json(local / model_rel / "metadata.json", expect=dict)
        expected = {f"{model_rel}/{name}": entry["sha256"] for name, entry in meta["files"].items()}
        if head_rel is not None:
            if not r.get("value_head_sha256"):
                raise ValueError("result.json has a value head but no value_head_sha256 to check it against")
            expected[head_rel] = r["value_head_sha256"]
        block.fetch_export(source, local, include=lambda f: f in expected, expected_sha256=expected)
        if model_weights_sha256(local / model_rel) != r.get("weights_sha256"):
            raise ValueError(f"weights SHA256 in {model_rel}/metadata.json differs from result.json's "
                             f"{r.get('weights_sha256')}")
    except Exception as exc:  # noqa: BLE001 - re-raised with the volume path and the reason
        raise OutputsNotFetched(f"{stage}: could not fetch the run's {what} from {source} to {local}: {exc}") from exc
    return _Fetched(local, local / model_rel, local / head_rel if head_rel else None, checkpoint)


def _record_provenance(result: StageResult, config_hash: str | None, model: ModelArtifact,
                       datasets: DatasetsArtifact, reference: ModelArtifact | None, parent_run_id: str | None) -> None:
    """provenance.json in the run dir (when it is on this machine) and the same record as MLflow tags."""
    from prefect.runtime import flow_run, task_run

    from wmtp_core.provenance import mlflow_tags, run_record, write_provenance

    record = run_record(
        experiment=result.experiment, stage=result.stage, config_hash=config_hash,
        dataset_manifest=datasets.manifest_path, dataset_manifest_sha256=datasets.manifest_sha256,
        input_model_dir=model.model_dir, reference_model_dir=reference.model_dir if reference else None,
        output_model_dir=result.model_dir, prefect_flow_run_id=str(flow_run.id) if flow_run.id else None,
        prefect_task_run_id=str(task_run.id) if task_run.id else None, mlflow_run_id=result.mlflow_run_id,
        mlflow_parent_run_id=parent_run_id)
    if result.output_dir.is_dir():
        write_provenance(result.output_dir, record)
    if result.mlflow_run_id:
        _mlflow.set_tags(result.mlflow_run_id, mlflow_tags(record))
