"""The shipped deployments: one per experiment of the registry, each running the whole DAG (upload included)."""

from pathlib import Path

import yaml

from flows.layout import LOCAL_VOLUME, Locations
from wmtp_core import paths
from wmtp_core.experiments import EXPERIMENTS


def test_one_deployment_per_experiment_each_uploading_by_default() -> None:
    spec = yaml.safe_load((paths.REPO_ROOT / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))
    deployments = spec["deployments"]
    assert sorted(d["name"] for d in deployments) == sorted(EXPERIMENTS)
    for d in deployments:
        assert d["entrypoint"] == "flows/wmtp.py:wmtp"
        assert d["parameters"] == {"experiment": d["name"], "upload_target": LOCAL_VOLUME}


def test_upload_destination(tmp_path: Path) -> None:
    loc = Locations.under(tmp_path / "storage")
    assert loc.upload_destination(LOCAL_VOLUME) == str((tmp_path / "storage").resolve() / "runs" / "_volume")
    assert loc.upload_destination(None) is None and loc.upload_destination("") is None
    assert loc.upload_destination("volume://store/vol/x") == "volume://store/vol/x"
    assert loc.upload_destination(str(tmp_path / "v")) == str(tmp_path / "v")
    assert Locations.under(None).upload_destination(LOCAL_VOLUME) == str(paths.RUNS_ROOT / "_volume")


def test_run_request_validates_the_flow_parameters() -> None:
    import pytest
    from pydantic import ValidationError

    from flows.request import RunRequest

    given = dict(experiment="rho1", preset="smoke", use_micro_model=True, dataset_suffix="small", base_checkpoint=None,
                 infrastructure="local", device="cpu", eval_dataset="mbpp", eval_limit=4, eval_n=1,
                 eval_max_new_tokens=64, upload_target=LOCAL_VOLUME, micro_plan="tiny",
                 train_overrides=["data.max_len=640"], storage_root=None, seed=3)
    request = RunRequest(**given)
    assert request.label == "rho1-s3" and request.overrides == ["data.max_len=640", "run.seed=3"]
    assert RunRequest(**{**given, "seed": None}).overrides == ["data.max_len=640"]
    with pytest.raises(ValidationError, match="experiment"):
        RunRequest(**{**given, "experiment": "rho1_weighted"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        RunRequest(**given, eval_temperature=0.5)
