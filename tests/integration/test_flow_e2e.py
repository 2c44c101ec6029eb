"""The real `wmtp` DAG end to end for each experiment on tiny models (no stand-ins): a converted tiny base, the
`tiny` micro plan, the smoke preset on the shipped small MBPP set through LocalProcess `wmtp train`, a 1-problem
sandboxed eval, upload to a local directory. One experiment per test (each is several training processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.data import shipped_storage
from fixtures.models import tiny_model_dir
from fixtures.orch import prefect_server, task_runs

from wmtp_core import paths

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("experiment", ["baseline", "verifiable", "rho1"])
def test_experiment_runs_end_to_end(experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from flows.request import RunRequest
    from flows.wmtp import wmtp
    from wmtp_core.provenance import chain

    prefect_server()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    storage = shipped_storage(tmp_path / "storage")
    base = tiny_model_dir(tmp_path, tokenizer_model=paths.CODE_TOKENIZER, name="tiny-base")
    flow = wmtp.with_options(result_storage=tmp_path / "results")

    s = flow(RunRequest(experiment=experiment, storage_root=str(storage), base_checkpoint=str(base),
                        micro_plan="tiny", eval_limit=1, eval_max_new_tokens=16, upload_target=str(tmp_path / "volume"),
                        train_overrides=["data.sources=[mbpp]", "data.max_len=640"]))

    states = {r.name.rsplit("-", 1)[0]: r.state_name for r in task_runs(s.flow_run_id)}
    assert states["stage2"] == states["evaluate"] == states["upload-artifacts"] == "Completed", states
    assert states["convert-checkpoint-skipped"] == "Skipped"  # the base given is already converted
    assert (states.get("stage1") == "Completed") == (experiment == "verifiable")
    assert (states.get("build-reference") == "Completed") == (experiment == "rho1")
    assert set(s.pass_at_k) == {"pass@1"} and 0.0 <= s.pass_at_k["pass@1"] <= 1.0
    assert (s.model_dir / "metadata.json").is_file()
    assert (tmp_path / "volume" / "model" / "metadata.json").is_file()

    client = MlflowClient()
    nested = client.search_runs([client.get_run(s.mlflow_parent_run_id).info.experiment_id],
                                f"tags.mlflow.parentRunId = '{s.mlflow_parent_run_id}'")
    trained = [r for r in nested if r.data.tags.get("wmtp.provenance.stage")]
    assert len(trained) == (2 if experiment == "verifiable" else 1)
    assert {r.data.tags["prefect.flow_run_id"] for r in trained} == {s.flow_run_id}
    links = chain(s.model_dir)
    assert links[0]["artifact"] == "run" and links[0]["prefect_flow_run_id"] == s.flow_run_id
    assert len(links[0]["dataset_manifest_sha256"]) == 64
    assert any(link.get("kind") == "micro" for link in links)
