"""Submit a job as a VESSL run, stream its logs, wait for it, read back its result JSON from the export volume.

The run is terminated whenever this function leaves before the run reached a terminal status (timeout,
exception, KeyboardInterrupt, Prefect cancellation signal): the `finally` below, plus `ACTIVE_RUNS` for flow
hooks that fire from elsewhere.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from wmtp_core.secrets import redact, redact_data
from wmtp_core.vessl_client.cancel import ACTIVE_RUNS, ActiveRuns, terminate_quietly
from wmtp_core.vessl_client.client import SUCCESS_STATUSES, TERMINAL_STATUSES, VesslRunClient
from wmtp_core.vessl_client.storage import VolumeRef, VolumeStore

TAIL_LINES = 40


class RemoteRunFailed(RuntimeError):
    """The run ended in a non-success status (or timed out); carries id, status and the last log lines."""

    def __init__(self, run_id: int, status: str, last_lines: list[str], reason: str = ""):
        self.run_id = run_id
        self.status = status
        self.last_lines = list(last_lines)
        head = reason or f"VESSL run {run_id} finished with status {status!r}"
        tail = "\n".join(f"  | {line}" for line in self.last_lines) or "  | (no log lines)"
        super().__init__(redact(f"{head}\nlast {len(self.last_lines)} log line(s):\n{tail}"))


@dataclass(frozen=True)
class RemoteJob:
    spec: Mapping[str, object]
    export: VolumeRef  # the volume location the job's export mount is uploaded to
    result_rel: str  # the result JSON's path relative to `export`


@dataclass(frozen=True)
class RemoteJobResult:
    run_id: int
    status: str
    result: dict
    log_tail: list[str] = field(default_factory=list)
    result_url: str = ""


def watch_run(
    client: VesslRunClient,
    run_id: int,
    *,
    poll_interval_s: float,
    timeout_s: float,
    on_log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, list[str]]:
    """Poll status and stream new log lines until a terminal status; return (status, last lines)."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    after = 0.0
    deadline = clock() + timeout_s
    last_status = ""

    def drain() -> None:
        nonlocal after
        for entry in client.logs_after(run_id, after):
            after = max(after, entry.timestamp)
            for line in entry.message.rstrip("\n").split("\n"):
                clean = redact(line)
                tail.append(clean)
                on_log(clean)

    while True:
        status = client.status(run_id)
        if status != last_status:
            on_log(f"[vessl] run {run_id} status: {status}")
            last_status = status
        drain()
        if status in TERMINAL_STATUSES:
            drain()
            return status, list(tail)
        if clock() >= deadline:
            raise RemoteRunFailed(run_id, status, list(tail), f"VESSL run {run_id} timed out after {timeout_s}s "
                                  f"in status {status!r}")
        sleep(poll_interval_s)


def read_result(store: VolumeStore, job: RemoteJob, run_id: int) -> dict:
    location = f"{job.export.url}/{job.result_rel}"
    try:
        raw = store.read_bytes(job.export, job.result_rel)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise RuntimeError(redact(f"VESSL run {run_id} completed but its result {location} could not be read: "
                                  f"{exc}")) from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise RuntimeError(f"{location}: result of run {run_id} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RuntimeError(f"{location}: result of run {run_id} must be a JSON object")
    return redact_data(data)  # type: ignore[return-value]


def run_remote_job(
    client: VesslRunClient,
    store: VolumeStore,
    job: RemoteJob,
    *,
    poll_interval_s: float,
    timeout_s: float,
    on_log: Callable[[str], None],
    registry: ActiveRuns = ACTIVE_RUNS,
    sleep: Callable[[float], None] = time.sleep,
) -> RemoteJobResult:
    """Create the run, follow it to the end and return its parsed result; terminate it if we leave early."""
    run_id = client.create(job.spec)
    on_log(f"[vessl] created run {run_id} ({job.spec.get('name')})")
    registry.add(client, run_id)
    finished = False
    try:
        status, tail = watch_run(client, run_id, poll_interval_s=poll_interval_s, timeout_s=timeout_s,
                                 on_log=on_log, sleep=sleep)
        finished = True
        if status not in SUCCESS_STATUSES:
            raise RemoteRunFailed(run_id, status, tail)
        result = read_result(store, job, run_id)
        return RemoteJobResult(run_id, status, result, tail, f"{job.export.url}/{job.result_rel}")
    finally:
        registry.discard(run_id)
        if not finished:
            terminate_quietly(client, run_id, "submitter stopped before the run finished")
            on_log(f"[vessl] asked VESSL to terminate run {run_id}")
