"""The `wmtp` flow's wiring under a Prefect test server, with stand-ins for the wrapped wmtp_core functions:
DAG order and lineage (task_inputs), visible skips, MLflow parent/nested runs, provenance, upload, Cached reruns,
and a rerun of exactly the affected steps when an input file changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.orch import StandIns, prefect_server, task_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[StandIns, Path]:
    prefect_server()
    storage = tmp_path / "storage"
    for source in ("codecontests", "mbpp", "humaneval"):
        (storage / "datasets" / source / "source").mkdir(parents=True)
        (storage / "datasets" / source / "source" / "rows.jsonl").write_text(f'{{"source": "{source}"}}\n')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return StandIns(monkeypatch, tmp_path / "stand-ins"), storage


def _flow(tmp_path: Path):
    from flows.wmtp import wmtp

    return wmtp.with_options(result_storage=tmp_path / "results")



def _upstream_ids(run: object, param: str) -> set[str]:
    return {str(i.id) for i in run.task_inputs.get(param, []) if getattr(i, "input_type", "") == "task_run"}


def test_verifiable_flow_lineage_mlflow_provenance_and_cache(env, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from flows.request import RunRequest

    fakes, storage = env
    flow = _flow(tmp_path)
    request = RunRequest(experiment="verifiable", storage_root=str(storage), upload_target=str(tmp_path / "volume"))
    first = flow(request)

    runs = task_runs(first.flow_run_id)
    names = [r.name.rsplit("-", 1)[0] for r in runs]
    order = ["synthetic-base", "convert-checkpoint", "build-micro", "stage1", "stage2", "evaluate",
             "upload-artifacts"]
    assert [n for n in names if n in order] == order
    by = {r.name.rsplit("-", 1)[0]: r for r in runs}
    assert by["build-reference-skipped"].state_name == "Skipped"
    assert all(by[n].state_name == "Completed" for n in order + ["prepare-validate-datasets"])
    ids = {n: str(r.id) for n, r in by.items()}
    assert _upstream_ids(by["convert-checkpoint"], "source_dir") == {ids["synthetic-base"]}
    assert _upstream_ids(by["build-micro"], "base") == {ids["convert-checkpoint"]}
    assert _upstream_ids(by["stage1"], "model") == {ids["build-micro"]}
    assert _upstream_ids(by["stage2"], "datasets") == {ids["prepare-validate-datasets"]}
    assert _upstream_ids(by["stage2"], "upstream") == {ids["stage1"]}
    assert _upstream_ids(by["evaluate"], "stage") == {ids["stage2"]}
    assert _upstream_ids(by["upload-artifacts"], "stage") == {ids["stage2"]}

    assert [cmd[:3] for cmd in fakes.commands] == [["wmtp", "train", "--job"]] * 2  # the blocks run the TrainJob
    stage1_job, stage2_job = fakes.jobs
    assert stage1_job.stages == ["stage1"] and stage1_job.resume is None
    assert stage2_job.stages is None and Path(stage2_job.resume).name == "stage1-step-0000002"
    assert stage2_job.paths["datasets_root"] == str(storage.resolve() / "datasets")
    assert {e["WMTP_PARENT_RUN_ID"] for e in fakes.envs} == {first.mlflow_parent_run_id}

    client = MlflowClient()
    parent = client.get_run(first.mlflow_parent_run_id)
    assert parent.data.tags["prefect.flow_run_id"] == first.flow_run_id
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{first.mlflow_parent_run_id}'")
    assert [c.data.metrics["pass_at_1"] for c in children] == [0.25]
    # the default request samples (temperature 0.2): the harness decides (None) and the step records plain decoding
    assert [(c["temperature"], c["speculative"]) for c in fakes.eval_calls] == [(0.2, None)]
    assert {k: children[0].data.params[k] for k in ("temperature", "speculative")} == \
        {"temperature": "0.2", "speculative": "False"}
    assert first.pass_at_k == {"pass@1": 0.25}

    record = (first.model_dir.parent / "provenance.json").read_text()
    assert first.flow_run_id in record and "dataset_manifest_sha256" in record
    assert (tmp_path / "volume" / ".wmtp-manifest.json").is_file()

    second = flow(request)
    states = {r.name.rsplit("-", 1)[0]: r.state_name for r in task_runs(second.flow_run_id)}
    cached = ["synthetic-base", "convert-checkpoint", "prepare-validate-datasets", "build-micro", "stage1",
              "stage2", "evaluate"]
    assert {n: states[n] for n in cached} == dict.fromkeys(cached, "Cached")
    assert [fakes.count(s) for s in ("prepare", "build-micro-seed0", "train-stage1", "train-stage2")] == [1, 1, 1, 1]

    (storage / "datasets" / "mbpp" / "source" / "rows.jsonl").write_text('{"source": "mbpp", "edited": 1}\n')
    third = flow(request)
    states = {r.name.rsplit("-", 1)[0]: r.state_name for r in task_runs(third.flow_run_id)}
    assert states["prepare-validate-datasets"] == "Completed"
    assert states["convert-checkpoint"] == states["build-micro"] == "Cached"
    assert states["stage1"] == states["stage2"] == "Completed"
    assert [fakes.count(s) for s in ("prepare", "build-micro-seed0", "train-stage2")] == [2, 1, 2]


def test_compare_skips_what_each_experiment_does_not_need_and_publishes_a_table(
        env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    import flows.wmtp
    from flows.request import CompareRequest

    fakes, storage = env
    monkeypatch.setattr(flows.wmtp, "wmtp", _flow(tmp_path))
    compare = flows.wmtp.wmtp_compare.with_options(result_storage=tmp_path / "results")
    baseline, rho1 = compare(CompareRequest(experiments=["baseline", "rho1"], storage_root=str(storage)))

    base_states = {r.name.rsplit("-", 1)[0]: r.state_name for r in task_runs(baseline.flow_run_id)}
    assert base_states["stage1-skipped"] == base_states["build-reference-skipped"] == "Skipped"
    assert base_states["upload-artifacts-skipped"] == "Skipped"
    rho_states = {r.name.rsplit("-", 1)[0]: r.state_name for r in task_runs(rho1.flow_run_id)}
    assert rho_states["build-reference"] == "Completed" and rho_states["stage1-skipped"] == "Skipped"
    assert fakes.count("build-micro-seed1") == 1
    rho_job = fakes.jobs[-1]
    assert rho_job.experiment == "rho1" and rho_job.paths["reference_model_dir"].endswith("micro-ref-mtp")
    assert rho_job.recipe_path == "configs/recipe.rho1.yaml"

    with get_client(sync_client=True) as client:
        tables = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["wmtp-comparison"])))
    assert tables and "rho1" in str(tables[0].data) and "baseline" in str(tables[0].data)
    # the stand-in eval solves the same 1 of 4 problems everywhere: a zero difference, said as such
    assert "+0.000 [+0.000, +0.000]" in str(tables[0].data) and "not significant" in str(tables[0].data)


def test_compare_runs_each_experiment_under_several_seeds(env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.wmtp
    from flows.report import comparison_rows
    from flows.request import CompareRequest

    fakes, storage = env
    monkeypatch.setattr(flows.wmtp, "wmtp", _flow(tmp_path))
    compare = flows.wmtp.wmtp_compare.with_options(result_storage=tmp_path / "results")
    runs = compare(CompareRequest(experiments=["baseline"], seeds=2, storage_root=str(storage), eval_temperature=0.0,
                                  eval_speculative=False))

    assert [r.seed for r in runs] == [0, 1]
    assert [job.overrides.get("run.seed") for job in fakes.jobs] == [0, 1]
    names = [job.run_name for job in fakes.jobs]
    assert names[0].endswith("-s0") and names[1].endswith("-s1")
    assert runs[0].eval_results_path != runs[1].eval_results_path
    assert [(c["temperature"], c["speculative"]) for c in fakes.eval_calls] == [(0.0, False)] * 2  # greedy, plain
    (row,) = comparison_rows(runs)
    assert row["seeds"] == "2 (0,1)" and row["pass@1 [95% CI]"].startswith("0.250 [")
