"""Isolated execution of untrusted Python programs: one fresh subprocess per program.

Layers (the strongest mode the host supports is picked once by `detect_isolation`, or forced with the
`WMTP_SANDBOX_ISOLATION` environment variable; the modes are in `sandbox_isolation.py`):
  * OS: new mount, network (no interfaces but a down loopback) and PID namespaces (every process of the program
    dies with it); a private read-only filesystem view holding only the system directories, the Python
    installation and the program's own work directory (`sandbox_jail.py`: no home directories, repository, /tmp,
    /proc or /etc); as root, the unprivileged `nobody` user (so RLIMIT_NPROC applies and no process of ours can be
    signalled), otherwise a user namespace with every capability dropped; no-new-privileges. Without a private
    filesystem view the sandbox refuses to run unless WMTP_SANDBOX_ALLOW_UNISOLATED=1;
  * resource limits set in the child: CPU seconds, address space, file size, process count, no core dumps;
  * audit hooks in the child (`sandbox_boot.py`): no network sockets, no writes outside its own directory,
    no new programs, no signals to other processes, no ctypes, no tracing or object-graph walking;
  * a completion marker: `passed` needs the per-run random nonce that the boot code writes to a private pipe only
    after the program's code ran to its end (exit(), sys.exit(), os._exit() before that is a failure);
  * the parent: a fresh temporary directory per program, a scrubbed environment (no tokens or credentials
    inherited), a wall-clock timeout, and the whole process group killed when the program ends.
stdout/stderr go to files (bounded by RLIMIT_FSIZE) and come back truncated to `max_output_bytes`.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from wmtp_core.eval.sandbox_boot import EXIT_ASSERTION, EXIT_EARLY
from wmtp_core.eval.sandbox_isolation import (
    ALLOW_UNISOLATED_ENV,
    ISOLATION_ENV,
    Isolation,
    SandboxUnavailable,
    candidates,
    interpreter,
    jail_command,
    unisolated_allowed,
)

Status = Literal["passed", "failed", "timeout", "error"]
BOOT_SCRIPT = Path(__file__).with_name("sandbox_boot.py")
PROGRAM_NAME = "main.py"
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
    completed: bool = False  # the boot code's completion marker came back: the program's code ran to its end

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.lru_cache(maxsize=1)
def detect_isolation() -> Isolation:
    """The strongest isolation whose probe program runs here (or the one named by WMTP_SANDBOX_ISOLATION).

    Fails closed: without a private filesystem view it raises unless WMTP_SANDBOX_ALLOW_UNISOLATED=1."""
    found = candidates(include_unisolated=unisolated_allowed())
    forced = os.environ.get(ISOLATION_ENV)
    if forced:
        chosen = [c for c in found if c.name == forced]
        if not chosen:
            names = ", ".join(c.name for c in found) or "none"
            raise SandboxUnavailable(f"{ISOLATION_ENV}={forced!r}: not available here (available: {names}; modes without "
                             f"a private filesystem view need {ALLOW_UNISOLATED_ENV}=1)")
        return chosen[0]
    probe = SandboxLimits(wall_s=20.0)
    reasons = []
    for candidate in found:
        result = run_program("print('sandbox-ok')", limits=probe, isolation=candidate)
        if result.status == "passed" and result.stdout == "sandbox-ok\n":
            return candidate
        last = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        reasons.append(f"{candidate.name}: {last}")
    detail = "; ".join(reasons) or "unshare/setpriv not found"
    hint = "" if unisolated_allowed() else (f" (to run with the host filesystem visible to candidate programs, "
                                            f"set {ALLOW_UNISOLATED_ENV}=1 or pass --allow-unisolated)")
    raise SandboxUnavailable(f"no sandbox isolation mode could run a trivial program: {detail}{hint}")


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


def _command(isolation: Isolation, outer: Path, work: Path, limits: SandboxLimits, fds: tuple[int, int],
             exits_ok: bool) -> list[str]:
    numbers = (limits.cpu_s, limits.memory_mb << 20, limits.fsize_mb << 20, limits.nproc)
    boot_args = [str(work), PROGRAM_NAME, "1" if limits.audit_hooks else "0", *map(str, numbers), *map(str, fds),
                 "1" if exits_ok else "0"]
    boot_script = outer / BOOT_SCRIPT.name
    jail = jail_command(outer / "root", work, boot_script) if isolation.filesystem == "private-root" else []
    # -s -S: no user/site packages (stdlib only); -P: no script dir on sys.path; -B: no .pyc writes.
    boot = [interpreter(), "-s", "-S", "-P", "-B", str(boot_script), *boot_args]
    return [*isolation.namespaces, *jail, *isolation.drop, *boot]


def _prepare_dirs(source: str, stdin: str, isolation: Isolation) -> tuple[Path, Path]:
    outer = Path(tempfile.mkdtemp(prefix="wmtp-sbx-"))
    work = outer / "work"
    work.mkdir()
    (outer / "root").mkdir()  # the jail's mount point for the private filesystem view
    (work / PROGRAM_NAME).write_text(source, encoding="utf-8")
    (outer / "stdin").write_text(stdin, encoding="utf-8")
    # A 0644 copy of the boot script: the checkout may be private (a 0700 CI temp dir, umask 077) and the program's
    # user must still read it; in the jail only this copy is mounted, not a path into the repository.
    shutil.copyfile(BOOT_SCRIPT, outer / BOOT_SCRIPT.name)
    (outer / BOOT_SCRIPT.name).chmod(0o644)
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


def _status(returncode: int, completed: bool, timed_out: bool, cpu_s: float, limits: SandboxLimits,
            require_end: bool) -> Status:
    # With a PID namespace the CPU-limit SIGKILL reaches us as unshare's own error exit, so CPU time decides.
    if timed_out or returncode in _TIMEOUT_CODES or cpu_s >= limits.cpu_s:
        return "timeout"
    if returncode == 0 and (completed or not require_end):
        return "passed"
    if returncode in (0, EXIT_ASSERTION, EXIT_EARLY):  # exit status 0 without the marker: it left early
        return "failed"
    return "error"


def _new_nonce() -> bytes:
    return secrets.token_hex(16).encode()


def _marker_pipes(nonce: bytes) -> tuple[int, int, int]:
    """(nonce read end, marker read end, marker write end); the nonce is already written and its writer closed."""
    nonce_r, nonce_w = os.pipe()
    os.write(nonce_w, nonce)
    os.close(nonce_w)
    marker_r, marker_w = os.pipe()
    os.set_blocking(marker_r, False)
    return nonce_r, marker_r, marker_w


def _read_marker(fd: int, nonce: bytes) -> bool:
    try:
        data = os.read(fd, len(nonce) + 1)
    except BlockingIOError:  # nothing was written (a stray holder of the write end may still live)
        return False
    return secrets.compare_digest(data, nonce)


def _execute(cmd: list[str], outer: Path, work: Path, wall_s: float, pass_fds: tuple[int, ...]
             ) -> tuple[int, bool, float, float]:
    """Run to completion or to the wall-clock deadline; (exit code, wall timeout?, CPU seconds, wall seconds)."""
    start = time.monotonic()
    with (open(outer / "stdin", "rb") as fin, open(outer / "stdout", "wb") as fout,
          open(outer / "stderr", "wb") as ferr):
        try:
            proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=work, env=_clean_env(work),
                                    start_new_session=True, close_fds=True, pass_fds=pass_fds)
        finally:
            for fd in pass_fds:  # the child holds its copies; ours must go or the marker pipe never ends
                os.close(fd)
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
                isolation: Isolation | None = None, require_end: bool = True) -> ExecResult:
    """Run one Python program in a fresh sandbox and classify the outcome.

    passed: exit 0 and the completion marker (the program's code ran to its end; with require_end=False, as a
    stdin/stdout judge does, exit status 0 alone, and SystemExit(0) is a normal end); failed: an AssertionError
    escaped, or the program exited before its end; timeout: wall clock or CPU limit; error: anything else.
    """
    limits = limits or SandboxLimits()
    isolation = isolation or detect_isolation()
    outer, work = _prepare_dirs(source, stdin, isolation)
    nonce = _new_nonce()
    nonce_r, marker_r, marker_w = _marker_pipes(nonce)
    try:
        cmd = _command(isolation, outer, work, limits, (nonce_r, marker_w), exits_ok=not require_end)
        code, timed_out, cpu, wall = _execute(cmd, outer, work, limits.wall_s, (nonce_r, marker_w))
        completed = _read_marker(marker_r, nonce)
        stdout, truncated = _read_capped(outer / "stdout", limits.max_output_bytes)
        stderr, _ = _read_capped(outer / "stderr", limits.max_output_bytes)
    finally:
        os.close(marker_r)
        shutil.rmtree(outer, ignore_errors=True)
    if code == 0 and not completed and require_end:
        stderr += "\nsandbox: the program exited before its code ran to its end (no completion marker)\n"
    status = _status(code, completed, timed_out, cpu, limits, require_end)
    return ExecResult(status, code, stdout, stderr, wall, truncated, timed_out, str(work), completed)


def run_many(jobs: Sequence[tuple[str, str]], limits: SandboxLimits | None = None, workers: int = 2
             ) -> list[ExecResult]:
    """Run (source, stdin) jobs on `workers` parallel subprocesses; results in job order."""
    isolation = detect_isolation()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda job: run_program(job[0], job[1], limits, isolation), jobs))
