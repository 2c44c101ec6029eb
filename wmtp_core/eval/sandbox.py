"""Isolated execution of untrusted Python programs: one fresh subprocess per program.

Layers (the strongest the host supports is picked once by `detect_isolation`, or forced with the
`WMTP_SANDBOX_ISOLATION` environment variable):
  * OS: a new network namespace (no interfaces but a down loopback) and PID namespace (every process of the
    program dies with it), and, when we run as root, the unprivileged `nobody` user (so RLIMIT_NPROC applies,
    nothing owned by root can be written, and no process of ours can be signalled) with no-new-privileges;
  * resource limits set in the child: CPU seconds, address space, file size, process count, no core dumps;
  * audit hooks in the child (`sandbox_boot.py`): no network sockets, no writes outside its own directory,
    no new programs, no signals to other processes, no ctypes;
  * the parent: a fresh temporary directory per program, a scrubbed environment (no tokens or credentials
    inherited), a wall-clock timeout, and the whole process group killed when the program ends.
stdout/stderr go to files (bounded by RLIMIT_FSIZE) and come back truncated to `max_output_bytes`.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from wmtp_core.eval.sandbox_boot import EXIT_ASSERTION

Status = Literal["passed", "failed", "timeout", "error"]
BOOT_SCRIPT = Path(__file__).with_name("sandbox_boot.py")
PROGRAM_NAME = "main.py"
ISOLATION_ENV = "WMTP_SANDBOX_ISOLATION"
_TIMEOUT_CODES = (-signal.SIGKILL, -signal.SIGXCPU)


class SandboxLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 2048
    fsize_mb: int = 16
    nproc: int = 64
    max_output_bytes: int = 64 * 1024
    audit_hooks: bool = True


@dataclass(frozen=True)
class Isolation:
    name: str
    prefix: tuple[str, ...]  # wrapper command placed before the interpreter
    uid: int | None  # the unprivileged user the program runs as, None = ours
    network: Literal["namespace", "audit-hook"]


@dataclass
class ExecResult:
    status: Status
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    stdout_truncated: bool = False
    wall_timeout: bool = False  # killed by the parent's wall clock (rather than by the CPU limit)
    workdir: str = ""  # where it ran (already deleted)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _nobody_uid() -> int:
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return 65534


def _candidates() -> list[Isolation]:
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    namespaces = ("--net", "--pid", "--fork", "--kill-child")
    found: list[Isolation] = []
    if os.geteuid() == 0 and unshare and setpriv:
        uid = _nobody_uid()
        drop = (setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--nnp", "--")
        found.append(Isolation("netns+pidns+nobody", (unshare, *namespaces, *drop), uid, "namespace"))
        found.append(Isolation("nobody", drop, uid, "audit-hook"))
    if unshare:
        found.append(Isolation("userns+netns+pidns", (unshare, "--user", *namespaces, "--"), None, "namespace"))
    found.append(Isolation("plain", (), None, "audit-hook"))
    return found


@functools.lru_cache(maxsize=1)
def detect_isolation() -> Isolation:
    """The strongest isolation whose probe program runs here (or the one named by WMTP_SANDBOX_ISOLATION)."""
    candidates = _candidates()
    forced = os.environ.get(ISOLATION_ENV)
    if forced:
        chosen = [c for c in candidates if c.name == forced]
        if not chosen:
            names = ", ".join(c.name for c in candidates)
            raise ValueError(f"{ISOLATION_ENV}={forced!r}: not available here (available: {names})")
        return chosen[0]
    probe = SandboxLimits(wall_s=20.0)
    for candidate in candidates:
        result = run_program("print('sandbox-ok')", limits=probe, isolation=candidate)
        if result.status == "passed" and result.stdout == "sandbox-ok\n":
            return candidate
    raise RuntimeError("no sandbox isolation mode could run a trivial program")


def _clean_env(workdir: Path) -> dict[str, str]:
    """A fresh environment: nothing of ours (tokens, credentials, proxies) is inherited."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
    }


def _command(isolation: Isolation, workdir: Path, limits: SandboxLimits) -> list[str]:
    numbers = (limits.cpu_s, limits.memory_mb << 20, limits.fsize_mb << 20, limits.nproc)
    boot_args = [str(workdir), PROGRAM_NAME, "1" if limits.audit_hooks else "0", *map(str, numbers)]
    # -s -S: no user/site packages (stdlib only); -P: no script dir on sys.path; -B: no .pyc writes.
    return [*isolation.prefix, sys.executable, "-s", "-S", "-P", "-B", str(BOOT_SCRIPT), *boot_args]


def _prepare_dirs(source: str, stdin: str, isolation: Isolation) -> tuple[Path, Path]:
    outer = Path(tempfile.mkdtemp(prefix="wmtp-sbx-"))
    work = outer / "work"
    work.mkdir()
    (work / PROGRAM_NAME).write_text(source, encoding="utf-8")
    (outer / "stdin").write_text(stdin, encoding="utf-8")
    if isolation.uid is not None:
        outer.chmod(0o711)  # the program may enter work/ but not list or touch its siblings
        for path in (work, work / PROGRAM_NAME):
            os.chown(path, isolation.uid, isolation.uid)
    return outer, work


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_capped(path: Path, cap: int) -> tuple[str, bool]:
    with open(path, "rb") as handle:
        data = handle.read(cap + 1)
    return data[:cap].decode("utf-8", errors="replace"), len(data) > cap


def _status(returncode: int, timed_out: bool, cpu_s: float, limits: SandboxLimits) -> Status:
    # With a PID namespace the CPU-limit SIGKILL reaches us as unshare's own error exit, so CPU time decides.
    if timed_out or returncode in _TIMEOUT_CODES or cpu_s >= limits.cpu_s:
        return "timeout"
    if returncode == 0:
        return "passed"
    return "failed" if returncode == EXIT_ASSERTION else "error"


def _execute(cmd: list[str], outer: Path, work: Path, wall_s: float) -> tuple[int, bool, float, float]:
    """Run to completion or to the wall-clock deadline; (exit code, wall timeout?, CPU seconds, wall seconds)."""
    start = time.monotonic()
    with (open(outer / "stdin", "rb") as fin, open(outer / "stdout", "wb") as fout,
          open(outer / "stderr", "wb") as ferr):
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=work, env=_clean_env(work),
                                start_new_session=True, close_fds=True)
        fired = threading.Event()

        def on_deadline() -> None:
            fired.set()
            _kill_group(proc.pid)

        timer = threading.Timer(wall_s, on_deadline)
        timer.start()
        try:
            _, wait_status, usage = os.wait4(proc.pid, 0)  # blocks without polling; rusage covers descendants
        finally:
            timer.cancel()
            _kill_group(proc.pid)  # whatever the program left behind in its group
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
    return proc.returncode, fired.is_set(), usage.ru_utime + usage.ru_stime, time.monotonic() - start


def run_program(source: str, stdin: str = "", limits: SandboxLimits | None = None,
                isolation: Isolation | None = None) -> ExecResult:
    """Run one Python program in a fresh sandbox and classify the outcome.

    passed: exit 0; failed: an AssertionError escaped; timeout: wall clock or CPU limit; error: anything else.
    """
    limits = limits or SandboxLimits()
    isolation = isolation or detect_isolation()
    outer, work = _prepare_dirs(source, stdin, isolation)
    try:
        code, timed_out, cpu, wall = _execute(_command(isolation, work, limits), outer, work, limits.wall_s)
        stdout, truncated = _read_capped(outer / "stdout", limits.max_output_bytes)
        stderr, _ = _read_capped(outer / "stderr", limits.max_output_bytes)
    finally:
        shutil.rmtree(outer, ignore_errors=True)
    return ExecResult(_status(code, timed_out, cpu, limits), code, stdout, stderr, wall, truncated, timed_out, str(work))


def run_many(jobs: Sequence[tuple[str, str]], limits: SandboxLimits | None = None, workers: int = 2
             ) -> list[ExecResult]:
    """Run (source, stdin) jobs on `workers` parallel subprocesses; results in job order."""
    isolation = detect_isolation()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda job: run_program(job[0], job[1], limits, isolation), jobs))
