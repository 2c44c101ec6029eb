"""The blocks inside Prefect: registered + saved by setup_blocks, loaded by name, logs in the run logger,
and the on_crashed hook terminating a VESSL run still in flight."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from deployments.blocks import LocalProcess, VesslJob, terminate_active_vessl_runs
from tests.fixtures.fake_vessl_server import FakeVesslServer, write_env_file
from tests.fixtures.orch import prefect_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "tok-prefect-4d5c6b"


class _Crash(BaseException):
    """A BaseException escaping the flow: Prefect marks the run Crashed and calls on_crashed hooks."""


@pytest.fixture
def server(tmp_path: Path):
    prefect_server()
    with FakeVesslServer(tmp_path / "fake", token=TOKEN, secrets={"mlflow-password": "x"}) as srv:
        yield srv


def test_setup_blocks_saves_loadable_blocks_and_vessl_job_logs_into_prefect(server, tmp_path) -> None:
    from prefect import flow, task
    from prefect.logging import get_run_logger  # noqa: F401 - the sink under test

    from deployments import setup_blocks

    env_file = write_env_file(tmp_path / ".env.vessl", server)
    assert setup_blocks.main(["--env-file", str(env_file), "--cluster", "vessl-a100", "--image", "wmtp:test",
                              "--preset", "gpu-a100-1",
                              "--vessl-name", "test-vessl", "--local-name", "test-local"]) == 0
    loaded = VesslJob.load("test-vessl")
    assert loaded.env_file == str(env_file) and loaded.cluster == "vessl-a100"
    assert isinstance(LocalProcess.load("test-local"), LocalProcess)

    captured: list[str] = []

    @task
    def train() -> dict:
        block = VesslJob.load("test-vessl").model_copy(update={
            "import_volumes": {}, "poll_interval_s": 0.05, "secret_env": {"MLFLOW_TRACKING_PASSWORD": "mlflow-password"}})
        code = ("import json, sys\nprint('prefect-visible line', flush=True)\n"
                "json.dump({'ok': 1}, open(sys.argv[1] + '/result.json', 'w'))")
        return block.submit([sys.executable, "-c", code, "/mnt/export"], result_path="/mnt/export/result.json").result

    @flow
    def wmtp_vessl_probe() -> dict:
        return train()

    import logging

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record.getMessage())

    handler, run_logger = Grab(), logging.getLogger("prefect.task_runs")
    level = run_logger.level
    run_logger.addHandler(handler)
    run_logger.setLevel(logging.INFO)  # tests/conftest.py sets Prefect's level to WARNING
    try:
        assert wmtp_vessl_probe() == {"ok": 1}
    finally:
        run_logger.removeHandler(handler)
        run_logger.setLevel(level)
    assert "prefect-visible line" in captured


def test_on_crashed_hook_terminates_the_run_in_flight(server, tmp_path) -> None:
    from prefect import flow

    block = VesslJob(env_file=str(write_env_file(tmp_path / ".env.vessl", server)), cluster="vessl-a100",
                     preset="p", image="wmtp:test", import_volumes={}, poll_interval_s=0.05,
                     secret_env={"MLFLOW_TRACKING_PASSWORD": "mlflow-password"})
    outcome: list[BaseException] = []

    def submit() -> None:
        try:
            block.submit([sys.executable, "-c", "import time\nprint('train', flush=True)\ntime.sleep(120)"])
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    @flow(on_crashed=[terminate_active_vessl_runs])
    def crashing() -> None:
        threading.Thread(target=submit, daemon=True).start()
        deadline = time.monotonic() + 60
        while not any(r.status == "running" for r in server.runs.values()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        raise _Crash()

    with pytest.raises(_Crash):
        crashing()
    (run_id,) = server.runs
    assert server.terminated == [run_id] and server.runs[run_id].status == "terminated"
    deadline = time.monotonic() + 30
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "terminated" in str(outcome[0])
