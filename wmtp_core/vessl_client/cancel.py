"""Runs in flight in this process, so a cancelled or crashed flow can terminate them (pure Python, no Prefect)."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from wmtp_core.secrets import redact

log = logging.getLogger(__name__)


class Terminator(Protocol):
    def terminate(self, run_id: int) -> str: ...


class ActiveRuns:
    """Thread-safe registry of (client, run id) pairs that have been created and not yet finished."""

    def __init__(self) -> None:
        self._runs: dict[int, Terminator] = {}
        self._lock = threading.Lock()

    def add(self, client: Terminator, run_id: int) -> None:
        with self._lock:
            self._runs[run_id] = client

    def discard(self, run_id: int) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._runs)

    def terminate_all(self, reason: str) -> list[int]:
        """Terminate every registered run (errors logged, not raised); return the ids asked to terminate."""
        with self._lock:
            runs = dict(self._runs)
            self._runs.clear()
        for run_id, client in runs.items():
            terminate_quietly(client, run_id, reason)
        return sorted(runs)


def terminate_quietly(client: Terminator, run_id: int, reason: str) -> bool:
    try:
        client.terminate(run_id)
        log.warning("terminated VESSL run %s (%s)", run_id, reason)
        return True
    except Exception as exc:  # noqa: BLE001 - best effort during cancellation
        log.error("could not terminate VESSL run %s (%s): %s", run_id, reason, redact(str(exc)))
        return False


ACTIVE_RUNS = ActiveRuns()
