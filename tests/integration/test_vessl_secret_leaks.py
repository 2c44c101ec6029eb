"""Secrets never reach output: run with sentinel secret values and grep every output channel for them."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from deployments.blocks import JobFailed, LocalProcess, VesslJob
from tests.fixtures.fake_vessl_server import FakeVesslServer, write_env_file
from wmtp_core.vessl_client.runner import RemoteRunFailed

pytestmark = pytest.mark.integration
TOKEN = "tok-SENTINEL-a1b2c3d4"
PASSWORD = "pw-SENTINEL-e5f6a7b8"
SENTINELS = (TOKEN, PASSWORD)

LEAKY_JOB = (
    "import hashlib, json, os, sys\n"
    "pw = os.environ['MLFLOW_TRACKING_PASSWORD']\n"
    "print('password is', pw, flush=True)\n"
    "print('token guess', os.environ.get('VESSL_ACCESS_TOKEN', 'absent'), flush=True)\n"
    "if sys.argv[2] == 'fail':\n"
    "    raise SystemExit('crashed while using ' + pw)\n"
    "json.dump({'pw_sha': hashlib.sha256(pw.encode()).hexdigest(), 'echo': pw},\n"
    "          open(os.path.join(sys.argv[1], 'result.json'), 'w'))\n"
)


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for sentinel in SENTINELS:
            assert sentinel not in text


def test_no_secret_in_logs_exceptions_results_or_spec(tmp_path: Path, capsys, caplog) -> None:
    import hashlib

    caplog.set_level(logging.DEBUG)
    with FakeVesslServer(tmp_path / "fake", token=TOKEN, secrets={"mlflow-password": PASSWORD}) as server:
        env_file = write_env_file(tmp_path / ".env.vessl", server, MLFLOW_TRACKING_PASSWORD=PASSWORD)
        block = VesslJob(env_file=str(env_file), cluster="vessl-a100", preset="p", image="wmtp:test",
                         import_volumes={}, secret_env={"MLFLOW_TRACKING_PASSWORD": "mlflow-password"},
                         poll_interval_s=0.05, backoff_base_s=0.01)
        out = block.output_dir("j")
        ok = block.submit([sys.executable, "-c", LEAKY_JOB, out, "ok"], result_path=f"{out}/result.json")
        assert ok.result["pw_sha"] == hashlib.sha256(PASSWORD.encode()).hexdigest()  # the job did get it
        assert ok.result["echo"] == "***"
        with pytest.raises(RemoteRunFailed) as failed:
            block.submit([sys.executable, "-c", LEAKY_JOB, out, "fail"], result_path=f"{out}/result.json")
        specs = "\n".join(server.specs)

    with pytest.raises(JobFailed) as local_failed:
        LocalProcess(env={"MLFLOW_TRACKING_PASSWORD": PASSWORD}).submit(
            [sys.executable, "-c", LEAKY_JOB, str(tmp_path), "fail"], name="local-leak")

    captured = capsys.readouterr()
    assert "password is ***" in captured.out  # the line was streamed, redacted
    _assert_clean(captured.out, captured.err, caplog.text, str(failed.value), "\n".join(failed.value.last_lines),
                  str(local_failed.value), repr(ok), specs, repr(block), block.model_dump_json())
    assert "crashed while using ***" in str(failed.value)
