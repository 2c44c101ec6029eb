"""The Prefect infrastructure blocks end to end: LocalProcess, and VesslJob against the fake VESSL API."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from deployments.blocks import JobFailed, LocalProcess, VesslJob, run_streaming
from tests.fixtures.fake_vessl_server import FakeVesslServer, write_env_file
from wmtp_core.vessl_client.runner import RemoteRunFailed

pytestmark = pytest.mark.integration
TOKEN = "tok-blocks-1f2e3d"

RESULT_CODE = (
    "import json, os, sys\n"
    "out = sys.argv[1]\n"
    "os.makedirs(out, exist_ok=True)\n"
    "print('epoch 1 done', flush=True)\n"
    "json.dump({'sha256': 'ab' * 32, 'out': out}, open(os.path.join(out, 'result.json'), 'w'))\n"
)


def test_local_process_streams_and_returns_result(tmp_path: Path, capsys) -> None:
    block = LocalProcess(runs_dir=str(tmp_path / "runs"))
    out = block.output_dir("job-a")
    res = block.submit([sys.executable, "-c", RESULT_CODE, out], result_path=f"{out}/result.json", name="job-a")
    assert res.backend == "local" and res.status == "completed"
    assert res.result == {"sha256": "ab" * 32, "out": out}
    assert "epoch 1 done" in capsys.readouterr().out and "epoch 1 done" in res.log_tail


def test_local_process_failure_names_code_and_tail(tmp_path: Path) -> None:
    block = LocalProcess(runs_dir=str(tmp_path))
    with pytest.raises(JobFailed, match=r"exited with code 4\n  \| bad config line 3"):
        block.submit([sys.executable, "-c", "print('bad config line 3'); raise SystemExit(4)"], name="bad")
    with pytest.raises(JobFailed, match="wrote no result file"):
        block.submit([sys.executable, "-c", "print('ok')"], workdir=str(tmp_path), name="noresult")


def test_local_process_train_command(tmp_path: Path) -> None:
    assert LocalProcess().train_command(["--preset", "x"])[1:] == ["-m", "wmtp_core.cli", "train", "--preset", "x"]
    assert "--nproc-per-node=2" in LocalProcess(nproc=2).train_command(["--preset", "x"])


def test_leaving_early_kills_the_local_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\nprint('go', flush=True)\ntime.sleep(60)"

    def on_log(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_streaming([sys.executable, "-c", code], tmp_path, dict(os.environ), on_log, timeout_s=60)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture
def server(tmp_path: Path):
    with FakeVesslServer(tmp_path / "fake", token=TOKEN, secrets={"mlflow-password": "pw-remote"}) as srv:
        yield srv


def _vessl_block(server: FakeVesslServer, tmp_path: Path, **extra_env: str) -> VesslJob:
    env_file = write_env_file(tmp_path / ".env.vessl", server, **extra_env)
    return VesslJob(env_file=str(env_file), cluster="vessl-a100", preset="gpu-a100-1", image="wmtp:test",
                    import_volumes={}, export_volume="volume://wmtp-storage/wmtp-runs",
                    secret_env={"MLFLOW_TRACKING_PASSWORD": "mlflow-password"}, poll_interval_s=0.05,
                    backoff_base_s=0.01, request_timeout_s=5)


def test_vessl_job_block_submits_and_reads_result(server, tmp_path, capsys) -> None:
    block = _vessl_block(server, tmp_path)
    out = block.output_dir("stage2")
    res = block.submit([sys.executable, "-c", RESULT_CODE, out], env={"WMTP_PARENT_RUN_ID": "p-1"},
                       result_path=f"{out}/result.json", name="Stage2 verifiable")
    assert res.backend == "vessl" and res.status == "completed" and res.run_id == str(next(iter(server.runs)))
    assert res.result["sha256"] == "ab" * 32
    assert res.result_location.startswith("volume://wmtp-storage/wmtp-runs/stage2-verifiable-")
    assert "epoch 1 done" in capsys.readouterr().out
    spec = server.specs[0]
    assert "WMTP_PARENT_RUN_ID: p-1" in spec and "secret: mlflow-password" in spec and TOKEN not in spec


def test_vessl_job_failure_and_train_command(server, tmp_path) -> None:
    block = _vessl_block(server, tmp_path)
    with pytest.raises(RemoteRunFailed, match="status 'failed'"):
        block.submit([sys.executable, "-c", "raise SystemExit('diverged')"], name="boom")
    assert block.train_command(["--preset", "a"]) == ["wmtp", "train", "--preset", "a"]
    multi = block.model_copy(update={"gpu_count": 4}).train_command(["--preset", "a"])
    assert multi[:3] == ["torchrun", "--standalone", "--nproc-per-node=4"] and multi[3:6] == ["-m", "wmtp_core.cli",
                                                                                              "train"]


def test_a_later_run_imports_an_earlier_runs_export(server, tmp_path) -> None:
    block = _vessl_block(server, tmp_path)
    root = block.output_dir("")
    stage1 = ("import json, os, sys\nd = os.path.join(sys.argv[1], 's1')\nos.makedirs(d + '/ckpt', exist_ok=True)\n"
              "open(d + '/ckpt/step-3.pt', 'w').write('weights')\n"
              "json.dump({'checkpoint': d + '/ckpt/step-3.pt'}, open(d + '/result.json', 'w'))\n")
    first = block.submit([sys.executable, "-c", stage1, root], result_path=f"{root}/s1/result.json", name="s1")
    assert first.export_url.startswith("volume://wmtp-storage/wmtp-runs/s1-")
    stage2 = ("import json, os, sys\nw = open('/mnt/stage1/s1/ckpt/step-3.pt').read()\n"
              "os.makedirs(sys.argv[1] + '/s2', exist_ok=True)\n"
              "json.dump({'resumed_from': w}, open(sys.argv[1] + '/s2/result.json', 'w'))\n")
    second = block.submit([sys.executable, "-c", stage2, root], result_path=f"{root}/s2/result.json", name="s2",
                          imports={"/mnt/stage1": first.export_url})
    assert second.result == {"resumed_from": "weights"}


def test_remote_env_gets_the_mlflow_server_not_a_local_store(server, tmp_path) -> None:
    block = _vessl_block(server, tmp_path, MLFLOW_TRACKING_URI="https://mlflow.example.org")
    job = block.build_job(["wmtp", "train"], {"MLFLOW_TRACKING_URI": "sqlite:///storage/mlflow/mlflow.db",
                                              "WMTP_PARENT_RUN_ID": "p"}, None, "/mnt/export/x/result.json", "x")
    assert job.spec["env"]["MLFLOW_TRACKING_URI"] == "https://mlflow.example.org"  # type: ignore[index]
    assert job.result_rel == "x/result.json" and job.spec["export"] == {"/mnt/export/": job.export.url}
    kept = block.build_job(["wmtp"], {"MLFLOW_TRACKING_URI": "https://other.example.org"}, None, "r.json", "y")
    assert kept.spec["env"]["MLFLOW_TRACKING_URI"] == "https://other.example.org"  # type: ignore[index]


EXPORT_CODE = (
    "import hashlib, json, os, sys\n"
    "out = os.path.join(sys.argv[1], 'j')\n"
    "os.makedirs(out + '/model/safetensors', exist_ok=True)\n"
    "open(out + '/model/safetensors/model.safetensors', 'wb').write(b'weights')\n"
    "sha = hashlib.sha256(b'weights').hexdigest()\n"
    "json.dump({'files': {'safetensors/model.safetensors': {'sha256': sha}}}, open(out + '/model/metadata.json', 'w'))\n"
    "open(out + '/big.bin', 'wb').write(b'x' * 1000)\n"
    "from wmtp_core.train.job import TrainResult\n"
    "TrainResult(output_dir=out, checkpoint_dir=out + '/checkpoints', model_dir=out + '/model', value_head_path=None,"
    " mlflow_run_id=None, final_metrics={}, weights_sha256=sha, config_hash='c' * 64, completed=True,"
    " result_path=out + '/result.json', history_path=out + '/metrics.json').write()\n"
)


def test_fetch_export_brings_back_checked_files_from_an_isolated_run(tmp_path: Path) -> None:
    """With VESSL-like mounts the job's own paths exist nowhere here; its export comes back only through the
    storage API, each file checked against its expected SHA256; a stage's fetch failure names the volume path."""
    import hashlib

    from wmtp_core.vessl_client.outputs import OutputsNotFetched, fetch_run_outputs
    from wmtp_core.vessl_client.sync import SyncError

    sha = hashlib.sha256(b"weights").hexdigest()
    with FakeVesslServer(tmp_path / "fake", token=TOKEN, secrets={"mlflow-password": "pw"},
                         isolated_mounts=True) as srv:
        block = _vessl_block(srv, tmp_path)
        root = block.output_dir("")
        res = block.submit([sys.executable, "-c", EXPORT_CODE, root], result_path=f"{root}/j/result.json", name="j")
        assert not Path(res.result["output_dir"]).exists() and not list((tmp_path / "fake").glob("container-*"))
        source, weights = f"{res.export_url}/j", "model/safetensors/model.safetensors"
        block.fetch_export(source, tmp_path / "got", include=lambda f: f.startswith("model/"),
                           expected_sha256={weights: sha})
        assert (tmp_path / "got" / weights).read_bytes() == b"weights" and not (tmp_path / "got/big.bin").exists()
        with pytest.raises(SyncError, match="SHA256 differs from the expected"):
            block.fetch_export(source, tmp_path / "bad", expected_sha256={weights: "0" * 64})
        with pytest.raises(SyncError, match="not on the volume: model/gone.bin"):
            block.fetch_export(source, tmp_path / "bad", expected_sha256={"model/gone.bin": sha})

        result = res.train_result()
        fetched = fetch_run_outputs(block.fetch_export, res.export_url, result, "stage2", "j", tmp_path / "runs")
        assert fetched.model_dir == tmp_path / "runs/j/model" and (fetched.model_dir / "metadata.json").is_file()
        assert (tmp_path / "runs/j/big.bin").is_file() and fetched.checkpoint is None  # small records come too
        wrong = result.model_copy(update={"weights_sha256": "f" * 64})
        with pytest.raises(OutputsNotFetched, match=rf"stage2: could not fetch the run's model model/ from "
                                                    rf"{source} to .*runs2/j: weights SHA256"):
            fetch_run_outputs(block.fetch_export, res.export_url, wrong, "stage2", "j", tmp_path / "runs2")
