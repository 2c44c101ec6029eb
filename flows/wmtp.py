"""The `wmtp` flow: one experiment end to end, and `wmtp-compare`: several experiments plus a comparison table.

    prepare-validate-datasets ─┐
    [synthetic-base] → convert-checkpoint → build-micro ─┬─ [build-reference (rho1)] ─┐
                                                         └─ [stage1 (verifiable)] → stage2 → evaluate → upload

Steps an experiment does not need run as visible `<step>-skipped` task runs. The flow opens an MLflow parent
run tagged with its Prefect flow-run id; training stages nest under it through WMTP_PARENT_RUN_ID, the eval step
logs a nested run, and a markdown artifact summarises metrics, pass@k and where everything went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import State

from deployments.blocks import terminate_active_vessl_runs
from flows.layout import Locations
from flows.report import comparison_rows, summary_markdown
from flows.request import CompareRequest, RunRequest
from tasks._task import result_storage_path, skip
from tasks.checkpoint import convert_checkpoint, synthetic_base
from tasks.datasets import prepare_and_validate
from tasks.evaluate import evaluate
from tasks.micro import build_micro
from tasks.results import ExperimentSummary, ModelArtifact, StepRecord, model_artifact
from tasks.training import train_stage
from tasks.upload import upload_artifacts
from wmtp_core import paths
from wmtp_core.data.api import DEFAULT_SOURCES
from wmtp_core.experiments import EXPERIMENTS, MICRO_REFERENCE_FFN, MICRO_REFERENCE_SEED
from wmtp_core.tracking import mlflow_backend as tracking
from wmtp_core.tracking.mlflow_backend import resolve_tracking_uri
from wmtp_core.train.job import TrainJob, overrides_from

DATA_MAX_TOKENS = 2048


class Steps:
    """Each step's future (or state), so the summary can say Completed / Cached / Skipped per step."""

    def __init__(self) -> None:
        self.items: list[tuple[str, PrefectFuture | State | str]] = []

    def add(self, name: str, handle: PrefectFuture | State | str) -> Any:
        self.items.append((name, handle))
        return handle

    def records(self) -> list[StepRecord]:
        out = []
        for name, handle in self.items:
            if isinstance(handle, str):
                out.append(StepRecord(name, "Reused", handle))
                continue
            state = handle.state if isinstance(handle, PrefectFuture) else handle
            out.append(StepRecord(name, state.name or str(state.type), state.message or ""))
        return out


def _base_model(loc: Locations, base_checkpoint: str | None, steps: Steps) -> PrefectFuture | ModelArtifact:
    """A converted base: from --base-checkpoint, else the converted real base, else a synthetic one."""
    if base_checkpoint:
        source = Path(base_checkpoint).expanduser().resolve()
        if (source / "metadata.json").is_file():  # already in the project layout
            steps.add("convert-checkpoint", skip("convert-checkpoint", f"{source} is already converted"))
            return model_artifact(source, "already converted")
        return steps.add("convert-checkpoint", convert_checkpoint.submit(source, str(loc.base_dir)))
    if (loc.base_dir / "metadata.json").is_file():
        steps.add("convert-checkpoint", skip("convert-checkpoint", f"real base already converted at {loc.base_dir}"))
        return model_artifact(loc.base_dir, "real base")
    print(f"NOTICE: no real base model at {loc.base_dir} and no --base-checkpoint given: building the micro model "
          "from a SYNTHETIC base (random weights; every derived artifact is marked synthetic)")
    source = steps.add("synthetic-base", synthetic_base.submit(str(loc.synthetic_source), paths.CODE_TOKENIZER))
    return steps.add("convert-checkpoint", convert_checkpoint.submit(source, str(loc.synthetic_base_dir)))


def _reference(experiment: str, use_micro_model: bool, micro_plan: str, base: Any, loc: Locations,
               steps: Steps) -> Any:
    if not EXPERIMENTS[experiment].needs_reference:
        steps.add("build-reference", skip("build-reference", f"{experiment} uses no reference model"))
        return None
    if use_micro_model:  # a half-FFN-width slice of the same base: same tokenizer, a different (weaker) model
        future = build_micro.with_options(name="build-reference").submit(
            base, str(loc.micro_reference_dir), paths.CODE_TOKENIZER, plan=micro_plan, seed=MICRO_REFERENCE_SEED,
            ffn_hidden_dim=MICRO_REFERENCE_FFN[micro_plan])
        return steps.add("build-reference", future)
    if not (loc.reference_dir / "metadata.json").is_file():
        raise FileNotFoundError(EXPERIMENTS[experiment].missing_reference(loc.reference_dir, False)
                                + ", or run with use_micro_model=True")
    steps.add("build-reference", skip("build-reference", f"converted reference at {loc.reference_dir}"))
    return model_artifact(loc.reference_dir, "converted reference")


def train_job(experiment: str, preset: str, use_micro_model: bool, dataset_suffix: str | None, device: str,
              overrides: list[str]) -> TrainJob:
    """The experiment's TrainJob (the model and data paths are added once known). It is resolved to the full
    config here, before anything is submitted, so a bad combination fails in the flow and not inside a job."""
    job = TrainJob(experiment=experiment, preset=preset, use_micro_model=use_micro_model,
                   dataset_suffix=dataset_suffix or None, device=device,
                   overrides={"train.progress_bar": False, **overrides_from(overrides)})
    job.resolve(paths.REPO_ROOT)
    return job


@flow(name="wmtp", result_storage=result_storage_path(), log_prints=True,
      on_cancellation=[terminate_active_vessl_runs], on_crashed=[terminate_active_vessl_runs])
def wmtp(request: RunRequest = RunRequest(experiment="verifiable")) -> ExperimentSummary:
    """Run one experiment: data, base/micro model, the experiment's stages, eval, upload. The request's fields
    (flows/request.py) are the parameters: e.g. `upload_target` is a directory, volume://…, "local-volume" for
    <storage>/runs/_volume, or None for no upload; `seed` overrides the training seed (`run.seed`) and the eval
    sampling seed (None keeps the config's, and eval seed 0)."""
    loc, steps, run_id, label = Locations.under(request.storage_root), Steps(), str(flow_run.id), request.label
    parent = tracking.start_parent("wmtp", f"{label}-{flow_run.name}",
                                  {"prefect.flow_run_id": run_id, "prefect.flow_run_name": str(flow_run.name),
                                   "wmtp.experiment": request.experiment, "wmtp.preset": request.preset,
                                   "wmtp.infrastructure": request.infrastructure, "wmtp.seed": str(request.seed)})
    try:
        summary = _run(request, loc, steps, parent)
    except BaseException:
        tracking.finish_run(parent, "FAILED")
        raise
    tracking.log_run_metrics(parent, {**summary.final_metrics, **{f"eval/{k}": v for k, v in summary.pass_at_k.items()}})
    tracking.finish_run(parent)
    create_markdown_artifact(summary_markdown(summary, tracking.run_url(parent), resolve_tracking_uri(None)),
                             key=f"wmtp-{label}", description=f"WMTP {label} summary")
    return summary


def _run(r: RunRequest, loc: Locations, steps: Steps, parent: str) -> ExperimentSummary:
    experiment, use_micro_model, seed = r.experiment, r.use_micro_model, r.seed
    env = {tracking.PARENT_ENV: parent, "MLFLOW_TRACKING_URI": resolve_tracking_uri(None)}
    job = train_job(experiment, r.preset, use_micro_model, r.dataset_suffix, r.device, r.overrides)
    sources = list(DEFAULT_SOURCES)
    datasets = steps.add("prepare-validate-datasets", prepare_and_validate.submit(
        str(loc.datasets_root), sources, paths.CODE_TOKENIZER, DATA_MAX_TOKENS, loc.source_dirs(sources)))
    base = _base_model(loc, r.base_checkpoint, steps)
    if use_micro_model:
        model = steps.add("build-micro", build_micro.submit(base, str(loc.micro_dir), paths.CODE_TOKENIZER,
                                                            plan=r.micro_plan))
    else:
        steps.add("build-micro", skip("build-micro", "use_micro_model=False: training the base model itself"))
        model = base
    reference = _reference(experiment, use_micro_model, r.micro_plan, base, loc, steps)

    if r.infrastructure == "local":  # remote jobs use the storage/ locations inside their image
        local_paths = {"datasets_root": str(loc.datasets_root),
                       ("micro_model_dir" if use_micro_model else "base_model_dir"): str(_model_dir(model))}
        if reference is not None:
            local_paths["reference_model_dir"] = str(_model_dir(reference))
        job = job.model_copy(update={"paths": local_paths})
    tag = str(flow_run.name or flow_run.id)[:40] + ("" if seed is None else f"-s{seed}")
    common = dict(infrastructure=r.infrastructure, runs_dir=str(loc.runs_dir), model=model,
                  datasets=datasets, reference=reference, env=env)
    upstream = None
    if EXPERIMENTS[experiment].needs_stage1:
        upstream = steps.add("stage1", train_stage.with_options(name="stage1").submit(
            stage="stage1", job=job.model_copy(update={"stages": ["stage1"]}), upstream=None,
            job_name=f"{experiment}-stage1-{tag}", **common))
    else:
        steps.add("stage1", skip("stage1", f"{experiment} has no value-head pretraining stage"))
    stage2 = steps.add("stage2", train_stage.with_options(name="stage2").submit(
        stage="stage2", job=job, upstream=upstream, job_name=f"{experiment}-stage2-{tag}", **common))

    trained = stage2.result()
    evaluation = None
    if trained.model_dir is not None and trained.model_dir.is_dir():
        out_dir = loc.eval_dir / f"{experiment}-{r.eval_dataset}-{(trained.weights_sha256 or 'unknown')[:12]}"
        out_dir = out_dir if seed is None else out_dir.with_name(f"{out_dir.name}-s{seed}")
        evaluation = steps.add("evaluate", evaluate.submit(
            stage2, dataset=r.eval_dataset, n=r.eval_n, ks=[1], limit=r.eval_limit, out_dir=str(out_dir),
            max_new_tokens=r.eval_max_new_tokens, **r.eval_decoding, seed=seed or 0, device=r.device,
            parent_run_id=parent)).result()
    else:
        steps.add("evaluate", skip("evaluate", f"trained model {trained.model_dir} is not on this machine"))
    upload_target = loc.upload_destination(r.upload_target)
    if upload_target:
        steps.add("upload-artifacts", upload_artifacts.submit(stage2, evaluation, upload_target, parent)).result()
    else:
        steps.add("upload-artifacts", skip("upload-artifacts", "no upload_target given"))
    run_dirs = [*([upstream.result().output_dir] if upstream is not None else []), trained.output_dir]
    return ExperimentSummary(experiment, str(flow_run.id), parent, steps.records(), trained.final_metrics,
                             evaluation.pass_at_k if evaluation else {}, trained.model_dir, upload_target, seed,
                             evaluation.results_path if evaluation else None, run_dirs)


def _model_dir(handle: Any) -> Path:
    return (handle.result() if isinstance(handle, PrefectFuture) else handle).model_dir


@flow(name="wmtp-compare", result_storage=result_storage_path(), log_prints=True)
def wmtp_compare(request: CompareRequest = CompareRequest()) -> list[ExperimentSummary]:
    """Run several experiments one after another (each a `wmtp` subflow), each under `request.seeds` training
    seeds, and publish a comparison table (pass@k with bootstrap CIs, paired differences to Baseline, verdicts)."""
    summaries = [wmtp(run) for run in request.runs()]
    create_table_artifact(comparison_rows(summaries), key="wmtp-comparison",
                          description="WMTP experiments side by side: pass@k [bootstrap 95% CI], paired "
                                      "difference to baseline, weight statistics, critic report")
    return summaries


__all__ = ["wmtp", "wmtp_compare", "train_job"]
