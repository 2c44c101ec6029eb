"""The `wmtp` flow (verifiable: Stage 1 -> Stage 2 -> eval) with infrastructure = a saved VesslJob block, against
the fake VESSL API with VESSL-like mounts (`isolated_mounts`): each run writes its outputs into a private export
directory that is uploaded to the fake volume when the run ends and then deleted, so nothing a run wrote is
visible on this machine except through the storage API. Proves the Stage 1 -> Stage 2 handoff (Stage 2 imports
Stage 1's export volume and resumes from its last checkpoint instead of training Stage 1 again) and that the
exported model is fetched back (SHA256-checked) and evaluated, with MLflow runs nested under the flow's parent.

The test runs in its own pytest process: after this flow (with the vessl SDK loaded) the in-process Prefect test
server stopped recording task-run events for later tests in the same process (seen on a clean-clone CI run; root
cause not found yet), so isolating it keeps every other test's Prefect state honest."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from deployments.blocks import VesslJob
from tests.fixtures.data import shipped_storage
from tests.fixtures.fake_vessl_server import FakeVesslServer, write_env_file
from tests.fixtures.models import tiny_model_dir
from tests.fixtures.orch import in_isolated_process, prefect_server, run_isolated, task_runs
from wmtp_core import paths
from wmtp_core.train.job import TrainJob

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "tok-flow-e2e-3b4a"


def test_verifiable_flow_hands_off_stages_and_evaluates_the_fetched_model(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if not in_isolated_process():
        run_isolated(f"{Path(__file__).relative_to(paths.REPO_ROOT)}::"
                     "test_verifiable_flow_hands_off_stages_and_evaluates_the_fetched_model")
        return
    from mlflow.tracking import MlflowClient

    import flows.wmtp
    from flows.request import RunRequest

    prefect_server()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    storage = shipped_storage(tmp_path / "storage")
    base = tiny_model_dir(tmp_path, tokenizer_model=paths.CODE_TOKENIZER, name="tiny-base")
    with FakeVesslServer(tmp_path / "fake", token=TOKEN, job_cwd=paths.REPO_ROOT, isolated_mounts=True) as server:
        VesslJob(env_file=str(write_env_file(tmp_path / ".env.vessl", server)), cluster="vessl-a100",
                 preset="gpu-a100-1", image="wmtp:test", import_volumes={}, secret_env={},
                 # inputs only: the runs read the micro model and datasets the flow built (standing in for the
                 # model/dataset volumes synced beforehand); their outputs go to the isolated export mount
                 env={"WMTP_STORAGE": str(storage)},
                 poll_interval_s=0.2).save("fake-a100", overwrite=True)
        run = flows.wmtp.wmtp.with_options(result_storage=tmp_path / "results")
        summary = run(RunRequest(experiment="verifiable", storage_root=str(storage), base_checkpoint=str(base),
                                 micro_plan="tiny", eval_limit=1, eval_max_new_tokens=16, infrastructure="fake-a100",
                                 upload_target=str(tmp_path / "volume"),
                                 train_overrides=["data.sources=[mbpp]", "data.max_len=640"]))
        specs = [yaml.safe_load(s) for s in server.specs]
        leftovers = list((tmp_path / "fake").glob("container-*"))

    states = {r.name.rsplit("-", 1)[0]: r.state_name for r in task_runs(summary.flow_run_id)}
    assert states["stage1"] == states["stage2"] == states["evaluate"] == states["upload-artifacts"] == "Completed", \
        states
    assert len(specs) == 2 and not leftovers
    # Stage 2 imported Stage 1's export volume and resumed from the last Stage 1 checkpoint in it
    stage1_export = specs[0]["export"]["/mnt/export/"]
    assert specs[1]["import"] == {"/mnt/upstream/": stage1_export}
    jobs = []  # each run's command is `wmtp train --job <TrainJob JSON>`
    for spec in specs:
        command = shlex.split(spec["run"][0]["command"])
        jobs.append(TrainJob.parse(command[command.index("--job") + 1]))
    resume = Path(jobs[1].resume)
    assert resume.parts[:3] == ("/", "mnt", "upstream") and resume.name.startswith("stage1-step-")
    assert jobs[0].resume is None and jobs[0].stages == ["stage1"]

    # the trained model was fetched into this flow's storage and evaluated there; the run's own paths are gone
    model = summary.model_dir
    assert model is not None and model.parent.parent == storage / "runs" and (model / "metadata.json").is_file()
    assert set(summary.pass_at_k) == {"pass@1"}
    assert (tmp_path / "volume" / "model" / "metadata.json").is_file()
    assert (tmp_path / "volume" / "value_head.safetensors").is_file()
    stage2 = json.loads((model.parent / "result.json").read_text())
    assert not Path(stage2["output_dir"]).exists() and (model.parent / "provenance.json").is_file()

    # Stage 1 was not trained again: Stage 2's history holds Stage 1's history as restored from the checkpoint,
    # and its MLflow run logged no Stage 1 step
    stage1_local = storage / "runs" / resume.parts[3]
    history1 = json.loads((stage1_local / "metrics.json").read_text())["stage1"]
    history2 = json.loads((model.parent / "metrics.json").read_text())
    assert history1 and history2["stage1"] == history1 and history2["stage2"]
    client = MlflowClient()
    assert client.get_metric_history(stage2["mlflow_run_id"], "stage1/loss") == []
    assert client.get_metric_history(stage2["mlflow_run_id"], "stage2/loss")
    nested = client.search_runs([client.get_run(summary.mlflow_parent_run_id).info.experiment_id],
                                f"tags.mlflow.parentRunId = '{summary.mlflow_parent_run_id}'")
    trained = [r for r in nested if r.data.tags.get("wmtp.provenance.stage")]
    assert len(trained) == 2 and {r.data.tags["prefect.flow_run_id"] for r in trained} == {summary.flow_run_id}
