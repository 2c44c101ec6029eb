"""A real tiny `wmtp train` through the VesslJob block against the fake VESSL API: model and datasets synced to
volumes with the storage sync, imported into the run, result.json read back from the export volume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deployments.blocks import VesslJob
from tests.fixtures.fake_vessl_server import FakeVesslServer, fast_settings, write_env_file
from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import write_tiny_datasets
from wmtp_core import paths
from wmtp_core.vessl_client.storage import VolumeRef, VolumeStore
from wmtp_core.vessl_client.sync import sync_to_volume

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "tok-train-e2e-7c8d"


def test_wmtp_train_runs_as_a_vessl_job(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir(tmp_path / "build"), models / "micro")
    datasets = write_tiny_datasets(tmp_path / "datasets")
    with FakeVesslServer(tmp_path / "fake", token=TOKEN, job_cwd=paths.REPO_ROOT,
                         secrets={"mlflow-password": "unused"}) as server:
        store = VolumeStore(fast_settings(server))
        sync_to_volume(store, [models, datasets], VolumeRef.parse("volume://wmtp-storage/wmtp-models"),
                       echo=lambda s: None)
        block = VesslJob(env_file=str(write_env_file(tmp_path / ".env.vessl", server)), cluster="vessl-a100",
                         preset="gpu-a100-1", image="wmtp:test", poll_interval_s=0.2,
                         import_volumes={"/mnt/models": "volume://wmtp-storage/wmtp-models/models",
                                         "/mnt/datasets": "volume://wmtp-storage/wmtp-models/datasets"},
                         secret_env={"MLFLOW_TRACKING_PASSWORD": "mlflow-password"})
        root = block.output_dir("")
        command = block.train_command([
            "--config", "configs/defaults.yaml", "--recipe", "configs/recipe.baseline.yaml", "--preset", "smoke",
            "--use-micro-model", "--dataset-suffix", "small", "--device", "cpu", "--run-name", "e2e",
            "--no-mlflow", "--set", "paths.micro_model_dir=/mnt/models/micro",
            "--set", "paths.datasets_root=/mnt/datasets", "--set", f"run.output_root={root}",
            "--set", "train.progress_bar=false"])
        assert command[:2] == ["wmtp", "train"]
        job = block.submit(command, result_path=f"{root}/e2e/result.json", name="baseline-stage2")
        assert job.status == "completed" and len(job.result["weights_sha256"]) == 64
        exported = store.list(VolumeRef.parse(job.export_url))
        assert "e2e/result.json" in exported and any(k.startswith("e2e/") and k.endswith(".safetensors")
                                                     for k in exported)
