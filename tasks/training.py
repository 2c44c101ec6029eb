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
from pathlib import Path
from typing import Any

from deployments.blocks import JobFailed
from tasks._task import wmtp_task
from tasks.results import DatasetsArtifact, ModelArtifact, StageResult
from wmtp_core.plan.advice import MemoryPlanError
from wmtp_core.plan.job import check_train_job
from wmtp_core.tracking import mlflow_backend as tracking
from wmtp_core.vessl_client.outputs import OutputsNotFetched, fetch_run_outputs


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
           give_up_on=(JobFailed, OutputsNotFetched, MemoryPlanError))
def train_stage(stage: str, experiment: str, infrastructure: str, runs_dir: str, train_args: list[str],
                model: ModelArtifact, datasets: DatasetsArtifact, reference: ModelArtifact | None,
                upstream: StageResult | None, job_name: str, env: dict[str, str]) -> StageResult:
    """Run one stage. `model`, `datasets`, `reference` and `upstream` are here so the cache key follows their
    contents; `train_args` already point the trainer at them."""
    block = load_infrastructure(infrastructure, runs_dir)
    root = block.output_dir("")  # LocalProcess: its runs_dir; VesslJob: the export mount (as the job sees it)
    if getattr(block, "gpu_memory_gb", None):  # a block declaring its GPUs: refuse a job that cannot fit them
        check_train_job(train_args, block.gpu_count, block.gpu_memory_gb, model.model_dir,
                        reference.model_dir if reference else None)
    resume, imports = _resume(upstream)
    command = block.train_command([*train_args, *resume, "--run-name", job_name, "--set", f"run.output_root={root}"])
    job = block.submit(command, env=env, result_path=f"{root}/{job_name}/result.json", name=job_name,
                       **({"imports": imports} if imports else {}))
    r = job.result
    metrics = {k: float(v) for k, v in (r.get("final_metrics") or {}).items() if isinstance(v, int | float)}
    export_url = getattr(job, "export_url", "")
    if export_url:
        fetched = fetch_run_outputs(block.fetch_export, export_url, r, stage, job_name, Path(runs_dir))
        result = StageResult(stage, experiment, fetched.output_dir, fetched.model_dir, fetched.value_head_path,
                             None, r.get("mlflow_run_id"), metrics, r.get("weights_sha256"), infrastructure,
                             export_url, fetched.checkpoint)
    else:
        out = Path(r["output_dir"])
        result = StageResult(stage, experiment, out, _path(r.get("model_dir")), _path(r.get("value_head_path")),
                             _last_checkpoint(out, stage), r.get("mlflow_run_id"), metrics, r.get("weights_sha256"),
                             infrastructure)
    _record_provenance(result, r.get("config_hash"), model, datasets, reference, env.get(tracking.PARENT_ENV))
    return result


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
        tracking.set_run_tags(result.mlflow_run_id, mlflow_tags(record))
