"""Retries with exponential backoff for transient VESSL API failures (HTTP 5xx/429, timeouts, dropped connections)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from wmtp_core.secrets import redact

T = TypeVar("T")
log = logging.getLogger(__name__)


class VesslApiError(RuntimeError):
    """A VESSL API call failed for good (after retries, or a non-retryable error)."""

    def __init__(self, what: str, attempts: int, cause: BaseException):
        self.what = what
        self.attempts = attempts
        self.status = http_status(cause)
        detail = redact(f"{type(cause).__name__}: {cause}".strip())
        super().__init__(f"VESSL API call '{what}' failed after {attempts} attempt(s) (status={self.status}): {detail}")


def http_status(exc: BaseException) -> int | None:
    """HTTP status of an SDK error, looking through wrapped errors (e.g. boto3's S3UploadFailedError raised while
    handling a botocore ClientError inside the SDK's S3 volume). VesslApiException keeps the status in `.status`,
    or in `.code` when the response body was not JSON."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for attr in ("status", "code"):
            value = getattr(current, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
        current = current.__cause__ or current.__context__
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: 5xx/429, timeouts and connection failures (urllib3 / OS level)."""
    status = http_status(exc)
    if status is not None:
        return status >= 500 or status == 429
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    module = type(exc).__module__ or ""
    if module.startswith("urllib3"):  # MaxRetryError, ReadTimeoutError, ProtocolError, ...
        return True
    name = type(exc).__name__
    if module.startswith("botocore") and ("Timeout" in name or "Connection" in name):
        return True
    # The SDK maps non-JSON transport failures to VesslApiException(code=0): treat status 0 as transport.
    return getattr(exc, "status", None) == 0 and type(exc).__name__ == "VesslApiException"


def backoff_delays(attempts: int, base: float, cap: float) -> list[float]:
    """Delays between attempts: base, 2*base, 4*base, ... capped at `cap` (attempts-1 entries)."""
    return [min(cap, base * (2**i)) for i in range(max(0, attempts - 1))]


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int,
    base_delay: float,
    max_delay: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn`; on a transient error wait and retry, up to `attempts` calls; then raise VesslApiError."""
    delays = backoff_delays(attempts, base_delay, max_delay)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_transient(exc) or attempt == attempts:
                raise VesslApiError(what, attempt, exc) from None
            delay = delays[attempt - 1]
            log.warning("VESSL API '%s' attempt %d/%d failed (%s); retrying in %.1fs",
                        what, attempt, attempts, redact(type(exc).__name__), delay)
            sleep(delay)
    raise AssertionError("unreachable")
