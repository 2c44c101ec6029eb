"""Run a job command as a local process: stream each redacted output line, keep the last lines, and kill the whole
process group when the caller leaves early or the timeout passes (the LocalProcess block's engine)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from wmtp_core.secrets import redact

TAIL_LINES = 40


def run_streaming(command: list[str], cwd: Path, env: Mapping[str, str], on_log: Callable[[str], None],
                  timeout_s: float) -> tuple[int, list[str]]:
    """Run `command`, forwarding each output line; kill its process group if we leave early or time out.
    Returns (exit code, the last TAIL_LINES lines)."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, start_new_session=True)
    timer = threading.Timer(timeout_s, lambda: kill_group(proc))
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            clean = redact(line.rstrip("\n"))
            tail.append(clean)
            on_log(clean)
        return proc.wait(), list(tail)
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of `proc`, SIGKILL it after 10 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
