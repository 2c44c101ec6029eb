"""Contract tests: the real `vessl` SDK against the loopback fake VESSL API (tests/fixtures/fake_vessl_server.py)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.fake_vessl_server import FakeVesslServer, fast_settings
from wmtp_core.vessl_client.cancel import ActiveRuns
from wmtp_core.vessl_client.client import VesslRunClient
from wmtp_core.vessl_client.retry import VesslApiError
from wmtp_core.vessl_client.runner import RemoteJob, RemoteRunFailed, run_remote_job
from wmtp_core.vessl_client.spec import build_run_spec
from wmtp_core.vessl_client.storage import VolumeRef, VolumeStore

pytestmark = pytest.mark.integration
TOKEN = "tok-contract-5e6f7a"


@pytest.fixture
def server(tmp_path: Path):
    with FakeVesslServer(tmp_path / "fake", token=TOKEN, pending_polls=2, secrets={"mlflow-pw": "pw-value"}) as srv:
        yield srv


def _job(name: str, code: str) -> RemoteJob:
    export = VolumeRef.parse(f"volume://stg/runs/{name}")
    spec = build_run_spec(name=name, cluster="vessl-a100", preset="gpu-a100-1", image="wmtp:test",
                          command=[sys.executable, "-c", code], exports={"/mnt/export": export.url},
                          env={"WMTP_PARENT_RUN_ID": "parent-1"}, secret_env={"MLFLOW_TRACKING_PASSWORD": "mlflow-pw"})
    return RemoteJob(spec, export, "result.json")


WRITE_RESULT = ("import json, os\nprint('step 1 loss 2.5')\nprint('step 2 loss 2.1')\n"
                "json.dump({'ok': True, 'parent': os.environ['WMTP_PARENT_RUN_ID']}, open('/mnt/export/result.json', 'w'))")


def _run(server, job, lines, settings=None, **kw):
    settings = settings or fast_settings(server)
    return run_remote_job(VesslRunClient(settings), VolumeStore(settings), job, poll_interval_s=0.05,
                          timeout_s=kw.pop("timeout_s", 60), on_log=lines.append, **kw)


def test_run_lifecycle_pending_running_logs_completed(server: FakeVesslServer) -> None:
    lines: list[str] = []
    out = _run(server, _job("lifecycle", WRITE_RESULT), lines)
    assert out.status == "completed"
    assert out.result == {"ok": True, "parent": "parent-1"}
    statuses = [ln.rsplit(" ", 1)[1] for ln in lines if "status:" in ln]
    assert statuses == ["pending", "running", "completed"]
    assert lines.index("step 1 loss 2.5") < lines.index("step 2 loss 2.1")
    assert "process exited with code 0" in out.log_tail
    spec = server.specs[0]
    assert "secret: mlflow-pw" in spec and "pw-value" not in spec  # secrets by reference
    routes = {(m, p.split("/run_executions")[0].rsplit("/", 1)[-1]) for m, p in server.requests}
    assert ("POST", "create_from_yaml") in routes


def test_failed_run_raises_with_id_status_and_last_lines(server: FakeVesslServer) -> None:
    code = "import sys\nfor i in range(60): print('line', i)\nprint('fatal: out of memory')\nsys.exit(3)"
    with pytest.raises(RemoteRunFailed) as info:
        _run(server, _job("failing", code), [])
    err = info.value
    assert err.status == "failed" and err.run_id in server.runs
    assert "fatal: out of memory" in err.last_lines and "line 0" not in err.last_lines  # a tail, not all
    assert f"run {err.run_id}" in str(err) and "'failed'" in str(err) and "fatal: out of memory" in str(err)
    assert server.terminated == []  # finished on its own: nothing to terminate


def test_http_5xx_is_retried(server: FakeVesslServer) -> None:
    server.inject("GET", r"/run_executions/\d+$", count=2, status=503)
    server.inject("GET", r"/logs$", count=1, status=502)
    out = _run(server, _job("flaky", WRITE_RESULT), [], settings=fast_settings(server, max_attempts=3))
    assert out.status == "completed"
    assert server.faults[0].remaining == 0 and server.faults[1].remaining == 0


def test_persistent_5xx_fails_clearly(server: FakeVesslServer) -> None:
    server.inject("POST", r"create_from_yaml$", count=10, status=500)
    with pytest.raises(VesslApiError) as info:
        _run(server, _job("down", WRITE_RESULT), [], settings=fast_settings(server, max_attempts=3))
    assert info.value.attempts == 3 and info.value.status == 500
    assert "'create run'" in str(info.value) and "after 3 attempt(s)" in str(info.value)
    assert server.runs == {}


def test_timeouts_are_retried_then_fail_clearly(server: FakeVesslServer) -> None:
    settings = fast_settings(server, request_timeout_s=0.3, max_attempts=2)
    client = VesslRunClient(settings)
    client.check_cluster("vessl-a100")  # SDK configured before faults are armed
    server.inject("POST", r"create_from_yaml$", count=1, hang_s=1.0)
    run_id = client.create(_job("slow", WRITE_RESULT).spec)  # first attempt times out, second succeeds
    assert run_id in server.runs and len(server.runs) == 1
    server.inject("POST", r"/terminate$", count=5, hang_s=1.0)
    with pytest.raises(VesslApiError) as info:
        client.terminate(run_id)
    assert info.value.attempts == 2 and "terminate run" in str(info.value)


class _Cancelled(BaseException):
    """Stands in for Prefect's cancellation signal (a BaseException raised in the task thread)."""


def test_cancellation_terminates_the_remote_run(server: FakeVesslServer) -> None:
    def on_log(line: str) -> None:
        if line.endswith("status: running"):
            raise _Cancelled()

    settings = fast_settings(server)
    job = _job("cancelled", "import time\nprint('training', flush=True)\ntime.sleep(120)")
    with pytest.raises(_Cancelled):
        run_remote_job(VesslRunClient(settings), VolumeStore(settings), job, poll_interval_s=0.05, timeout_s=60,
                       on_log=on_log)
    (run_id,) = server.runs
    assert server.terminated == [run_id]
    assert server.runs[run_id].status == "terminated" and server.runs[run_id].proc.poll() is not None


def test_flow_hook_registry_terminates_runs_in_flight(server: FakeVesslServer) -> None:
    registry = ActiveRuns()
    errors: list[BaseException] = []
    job = _job("hooked", "import time\nprint('training', flush=True)\ntime.sleep(120)")

    def target() -> None:
        try:
            _run(server, job, [], registry=registry)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    deadline = time.monotonic() + 30
    while not (server.runs and next(iter(server.runs.values())).status == "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert registry.terminate_all("flow cancelled") == list(server.runs)
    worker.join(30)
    assert isinstance(errors[0], RemoteRunFailed) and errors[0].status == "terminated"
    assert server.terminated == list(server.runs) and registry.ids() == []


def test_run_timeout_terminates(server: FakeVesslServer) -> None:
    with pytest.raises(RemoteRunFailed, match="timed out"):
        _run(server, _job("too-long", "import time\ntime.sleep(120)"), [], timeout_s=1.0)
    assert server.terminated == list(server.runs)


def test_unknown_cluster_is_a_clear_error(server: FakeVesslServer) -> None:
    job = _job("nocluster", WRITE_RESULT)
    job.spec["resources"]["cluster"] = "no-such-cluster"  # type: ignore[index]
    with pytest.raises(ValueError, match="no-such-cluster.*available: \\['vessl-a100'\\]"):
        _run(server, job, [])


def test_result_json_is_read_through_the_storage_api(server: FakeVesslServer) -> None:
    out = _run(server, _job("readback", WRITE_RESULT), [])
    assert out.result_url == "volume://stg/runs/readback/result.json"
    assert any(m == "POST" and p.endswith("/volumes/runs/federate") for m, p in server.requests)
    assert any(m == "GET" and p.endswith("/stg/runs/readback/result.json") for m, p in server.requests)
    assert json.loads((server.volume_dir("volume://stg/runs/readback") / "result.json").read_text())["ok"]


def test_missing_vessl_secret_fails_the_run(server: FakeVesslServer) -> None:
    server.secrets.clear()
    with pytest.raises(RemoteRunFailed, match="secret 'mlflow-pw' for env MLFLOW_TRACKING_PASSWORD not found"):
        _run(server, _job("nosecret", WRITE_RESULT), [])
