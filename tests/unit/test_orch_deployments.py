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
