"""Steps: Stage 1 / Stage 2 training through an infrastructure block (LocalProcess here, VesslJob remotely).

The block runs `wmtp train --job <TrainJob JSON>` (wmtp_core.train.run.run_training) and returns the result.json it
wrote, read as a TrainResult. Stage 2 of the verifiable experiment resumes from Stage 1's last checkpoint
(`TrainJob.resume`): the trainer then finds Stage 1 complete and runs Stage 2 with the pretrained value head.

Remote runs (the job result has an `export_url`: VesslJob) keep their outputs on their export volume. After each
one, its small records (result/checkpoints/metrics JSON, resolved config) are downloaded to
`<runs_dir>/<job name>`; after Stage 2 also its exported model and value head, each file checked against the
SHA256 in the model's metadata.json / result.json, so evaluate and upload work on the local copy. A remote
Stage 2 imports the Stage 1 run's export volume at UPSTREAM_MOUNT and resumes from the checkpoint there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployments.blocks import JobFailed
from tasks._task import wmtp_task
from tasks.results import DatasetsArtifact, ModelArtifact, StageResult
from wmtp_core.plan.advice import MemoryPlanError
from wmtp_core.plan.job import check_train_job
from wmtp_core.tracking.mlflow_backend import PARENT_ENV
from wmtp_core.train.handoff import record_stage_provenance, recorded_checkpoint, resume_point
from wmtp_core.train.job import RESULT_FILE, TrainJob
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


@wmtp_task("train-stage", kind="remote", cache_exclude=("job_name", "env"),
           give_up_on=(JobFailed, OutputsNotFetched, MemoryPlanError))
def train_stage(stage: str, job: TrainJob, infrastructure: str, runs_dir: str, model: ModelArtifact,
                datasets: DatasetsArtifact, reference: ModelArtifact | None, upstream: StageResult | None,
                job_name: str, env: dict[str, str]) -> StageResult:
    """Run one stage: the block runs `wmtp train --job <job>`. `model`, `datasets`, `reference` and `upstream`
    are here so the cache key follows their contents; `job` already points the trainer at them."""
    from prefect.runtime import flow_run, task_run

    block = load_infrastructure(infrastructure, runs_dir)
    if getattr(block, "gpu_memory_gb", None):  # a block declaring its GPUs: refuse a job that cannot fit them
        check_train_job(job, block.gpu_count, block.gpu_memory_gb, model.model_dir,
                        reference.model_dir if reference else None)
    root = block.output_dir("")  # LocalProcess: its runs_dir; VesslJob: the export mount (as the job sees it)
    resume, imports = (resume_point(upstream.stage, upstream.checkpoint, upstream.export_url,
                                    upstream.export_checkpoint) if upstream is not None else (None, {}))
    run = job.model_copy(update={"run_name": job_name, "output_root": root, "resume": resume})
    done = block.submit(block.train_command(["--job", run.argument()]), env=env,
                        result_path=f"{root}/{job_name}/{RESULT_FILE}", name=job_name,
                        **({"imports": imports} if imports else {}))
    r = done.train_result()
    export_url = getattr(done, "export_url", "")
    if export_url:
        fetched = fetch_run_outputs(block.fetch_export, export_url, r, stage, job_name, Path(runs_dir))
        result = StageResult(stage, job.experiment, fetched.output_dir, fetched.model_dir, fetched.value_head_path,
                             None, r.mlflow_run_id, r.final_metrics, r.weights_sha256, infrastructure,
                             export_url, fetched.checkpoint)
    else:
        result = StageResult(stage, job.experiment, r.output_dir, r.model_dir, r.value_head_path,
                             recorded_checkpoint(r.output_dir, stage), r.mlflow_run_id, r.final_metrics,
                             r.weights_sha256, infrastructure)
    record_stage_provenance(
        result.output_dir, experiment=result.experiment, stage=stage, config_hash=r.config_hash,
        dataset_manifest=datasets.manifest_path, dataset_manifest_sha256=datasets.manifest_sha256,
        input_model_dir=model.model_dir, reference_model_dir=reference.model_dir if reference else None,
        output_model_dir=result.model_dir, prefect_flow_run_id=str(flow_run.id) if flow_run.id else None,
        prefect_task_run_id=str(task_run.id) if task_run.id else None, mlflow_run_id=result.mlflow_run_id,
        mlflow_parent_run_id=env.get(PARENT_ENV))
    return result
