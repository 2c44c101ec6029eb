"""An unreachable tracking server is a one-line error naming the URI without its credentials, never a traceback."""

from __future__ import annotations

import socket

import pytest

from wmtp_core.tracking.mlflow_backend import MlflowLogger, TrackingError

PASSWORD = "pw-SENTINEL-tracking-4242"


@pytest.fixture
def unreachable_uri(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    monkeypatch.delenv("WMTP_PARENT_RUN_ID", raising=False)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://alice:{PASSWORD}@127.0.0.1:{port}"


def test_start_fails_with_a_redacted_one_line_error(unreachable_uri: str) -> None:
    with pytest.raises(TrackingError) as failed:
        MlflowLogger.start("exp", "run", unreachable_uri)
    message = str(failed.value)
    port = unreachable_uri.rsplit(":", 1)[1]
    assert message.startswith(f"MLflow tracking at http://***@127.0.0.1:{port}: starting run 'run' failed: ")
    assert PASSWORD not in message and "alice" not in message and "\n" not in message
    assert failed.value.__cause__ is None and failed.value.__suppress_context__  # the cause holds the password


def test_cli_prints_one_line_without_traceback(unreachable_uri: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    from wmtp_core.cli import main
    from wmtp_core.cli.commands import export_mlflow

    monkeypatch.setattr(export_mlflow, "_run", lambda args: MlflowLogger.start("exp", "run", args.tracking_uri))
    code = main(["export-mlflow", "--run-id", "r", "--out", "unused", "--tracking-uri", unreachable_uri])
    captured = capsys.readouterr()
    assert code == 1 and captured.err.startswith("error: MLflow tracking at http://***@127.0.0.1:")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert PASSWORD not in captured.out + captured.err


def test_flow_lineage_calls_fail_the_same_way(unreachable_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from wmtp_core.tracking.mlflow_backend import start_parent

    monkeypatch.setenv("MLFLOW_TRACKING_URI", unreachable_uri)
    with pytest.raises(TrackingError, match=r"^MLflow tracking at http://\*\*\*@127\.0\.0\.1:\d+: starting the parent"):
        start_parent("exp", "flow-run", {})
