"""Run spec builder: command per GPU count, volumes, env with secrets by reference only."""

from __future__ import annotations

import pytest
import yaml

from wmtp_core.vessl_client.spec import RunSpecError, build_run_spec, spec_to_yaml, train_command


def _spec(**kw):
    base = dict(name="stage2-abc123", cluster="c", preset="gpu-a100-4", image="img:1",
                command=["wmtp", "train", "--run-name", "a b"])
    base.update(kw)
    return build_run_spec(**base)


def test_train_command_single_and_multi_gpu() -> None:
    assert train_command(["--preset", "x"], 1) == ["wmtp", "train", "--preset", "x"]
    assert train_command(["--preset", "x"], 4) == ["torchrun", "--standalone", "--nproc-per-node=4", "-m",
                                                   "wmtp_core.cli", "train", "--preset", "x"]
    with pytest.raises(RunSpecError, match="gpus"):
        train_command([], 0)


def test_spec_round_trips_through_yaml_with_quoted_command_and_volumes() -> None:
    spec = _spec(imports={"/app/storage/models": "volume://stg/models"}, exports={"/mnt/export/": "volume://stg/runs/x"},
                 env={"WMTP_PARENT_RUN_ID": "r1"}, secret_env={"MLFLOW_TRACKING_PASSWORD": "mlflow-pw"})
    loaded = yaml.safe_load(spec_to_yaml(spec))
    assert loaded["resources"] == {"cluster": "c", "preset": "gpu-a100-4"} and loaded["image"] == "img:1"
    assert loaded["run"] == [{"command": "wmtp train --run-name 'a b'", "workdir": "/app"}]
    assert loaded["import"] == {"/app/storage/models/": "volume://stg/models"}
    assert loaded["export"] == {"/mnt/export/": "volume://stg/runs/x"}
    assert loaded["env"] == {"WMTP_PARENT_RUN_ID": "r1", "MLFLOW_TRACKING_PASSWORD": {"secret": "mlflow-pw"}}


@pytest.mark.parametrize("kw,field", [
    ({"name": "Bad_Name"}, "name"),
    ({"cluster": ""}, "cluster"),
    ({"command": []}, "command"),
    ({"imports": {"rel/path": "volume://s/v"}}, "import"),
    ({"exports": {"/out": "s3://bucket/x"}}, "export"),
    ({"env": {"MLFLOW_TRACKING_TOKEN": "abc"}}, "env.MLFLOW_TRACKING_TOKEN"),
    ({"env": {"A": "1"}, "secret_env": {"A": "s"}}, "secret_env.A"),
])
def test_invalid_fields_are_named(kw, field) -> None:
    with pytest.raises(RunSpecError, match=field):
        _spec(**kw)
