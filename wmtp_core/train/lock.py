"""One writer per run directory: an exclusive `fcntl.flock` on `<run dir>/.wmtp.lock`, held for the whole run.

The kernel drops the lock when the holder exits (even on SIGKILL), so a stale lock file never blocks a later run;
the file keeps the holder's pid and host only to name it in the error. Under torchrun only rank 0 writes the
run directory's shared files, so only rank 0 takes the lock (see Trainer).
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from wmtp_core.train.errors import RunSetupError

LOCK_FILE = ".wmtp.lock"


class RunDirLocked(RunSetupError):
    """Another process holds the run directory."""


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise RunDirLocked naming the directory and (when recorded) the holder."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunDirLocked(f"{self.run_dir}: in use by another run{holder} (lock {self.path}); wait for it to "
                               "finish or choose a different --run-name") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} host {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""
