"""Retry classification and backoff for VESSL API calls."""

from __future__ import annotations

import pytest

from wmtp_core.secrets import REDACTOR
from wmtp_core.vessl_client.retry import (
    VesslApiError,
    backoff_delays,
    call_with_retry,
    http_status,
    is_transient,
)


class FakeApiError(Exception):
    def __init__(self, status: int = 0, code: object = None):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.code = code


def test_classification() -> None:
    assert is_transient(FakeApiError(503)) and is_transient(FakeApiError(429))
    assert not is_transient(FakeApiError(404)) and not is_transient(FakeApiError(401))
    assert http_status(FakeApiError(0, code=502)) == 502  # SDK puts the status in .code for non-JSON bodies
    assert is_transient(TimeoutError()) and is_transient(ConnectionResetError())
    assert not is_transient(ValueError("bad spec"))


def test_backoff_grows_and_caps() -> None:
    assert backoff_delays(5, 1.0, 3.0) == [1.0, 2.0, 3.0, 3.0]
    assert backoff_delays(1, 1.0, 3.0) == []


def test_retries_transient_then_succeeds() -> None:
    calls, sleeps = [], []

    def fn():
        calls.append(1)
        if len(calls) < 3:
            raise FakeApiError(500)
        return "ok"

    assert call_with_retry(fn, what="x", attempts=5, base_delay=0.5, max_delay=10, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]


def test_gives_up_with_a_clear_redacted_error() -> None:
    REDACTOR.register(["sekrit-value-123"])
    sleeps: list[float] = []

    def fn():
        raise FakeApiError(502)

    with pytest.raises(VesslApiError, match=r"'read run 7' failed after 3 attempt\(s\) \(status=502\)") as info:
        call_with_retry(fn, what="read run 7", attempts=3, base_delay=1, max_delay=1, sleep=sleeps.append)
    assert len(sleeps) == 2 and info.value.attempts == 3

    def leaky():
        raise FakeApiError(400, code="bad token sekrit-value-123")

    with pytest.raises(VesslApiError) as info:
        call_with_retry(leaky, what="y", attempts=3, base_delay=0, max_delay=0, sleep=sleeps.append)
    assert info.value.attempts == 1 and "sekrit-value-123" not in str(info.value)


def test_status_found_through_wrapped_errors() -> None:
    class ClientError(Exception):
        response = {"ResponseMetadata": {"HTTPStatusCode": 503}}

    try:
        try:
            raise ClientError("put failed")
        except ClientError:
            raise RuntimeError("Failed to upload x")  # noqa: B904 - implicit __context__, as boto3 does
    except RuntimeError as wrapped:
        assert http_status(wrapped) == 503 and is_transient(wrapped)
