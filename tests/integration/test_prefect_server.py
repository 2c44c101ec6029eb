"""A real Prefect server on 127.0.0.1: `prefect deploy --all`, a process worker, `prefect deployment run
wmtp/verifiable`, wait for Completed; every process started here is stopped at the end (bounded timeouts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.data import shipped_storage
from fixtures.models import tiny_model_dir

from wmtp_core import paths

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFECT = [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, cwd=paths.REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prefect server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise AssertionError(f"prefect server not healthy after {timeout_s} s:\n{log.read_text()[-3000:]}")


def _run(cmd: list[str], env: dict[str, str], timeout_s: float) -> str:
    done = subprocess.run(cmd, cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd[2:])} failed ({done.returncode}):\n{output[-4000:]}"
    return output


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "results"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PREFECT_LOGGING_LEVEL": "INFO"}
    started: list[subprocess.Popen] = []
    try:
        proc = _start([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                      tmp_path / "server.log")
        started.append(proc)
        _wait_healthy(env["PREFECT_API_URL"], proc, tmp_path / "server.log", timeout_s=300)
        yield env, tmp_path
    finally:
        for proc in reversed(started):
            _stop(proc)


def _storage(tmp_path: Path) -> Path:
    return shipped_storage(tmp_path / "storage")


def test_deploy_worker_and_run_verifiable_deployment(server) -> None:
    import json

    env, tmp_path = server
    _run([*PREFECT, "work-pool", "create", "wmtp-process", "--type", "process"], env, 120)
    out = _run([*PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], env, 300)
    for name in ("wmtp/baseline", "wmtp/verifiable", "wmtp/rho1"):
        assert name in out, out[-3000:]
    worker = _start([*PREFECT, "worker", "start", "--pool", "wmtp-process"], env, tmp_path / "worker.log")
    try:
        storage = _storage(tmp_path)
        # the flow's one parameter, a RunRequest; given at run time it replaces the deployment's whole request
        request = {"experiment": "verifiable", "upload_target": "local-volume", "storage_root": str(storage),
                   "micro_plan": "tiny", "eval_limit": 1, "eval_max_new_tokens": 8,
                   "base_checkpoint": str(tiny_model_dir(tmp_path, tokenizer_model=paths.CODE_TOKENIZER))}
        out = _run([*PREFECT, "deployment", "run", "wmtp/verifiable", "--param", f"request={json.dumps(request)}",
                    "--watch", "--watch-timeout", "780"], env, 840)
        worker_log = (tmp_path / "worker.log").read_text()
        assert "Completed" in out, out[-3000:] + worker_log[-3000:]
    finally:
        _stop(worker)
    assert worker.poll() is not None
    # the server checks a run's request against the deployment's parameter schema: an unknown field is refused
    refused = subprocess.run([*PREFECT, "deployment", "run", "wmtp/baseline", "--param",
                              'request={"experiment": "baseline", "eval_top_p": 0.5}'],
                             cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "eval_top_p" in refused.stdout + refused.stderr, refused.stdout[-2000:]
    # the deployment ran the whole DAG: the upload target `local-volume` is the volume stand-in under the storage
    volume = storage / "runs" / "_volume"
    assert (volume / ".wmtp-manifest.json").is_file() and (volume / "model" / "metadata.json").is_file()
