"""Runs INSIDE the sandboxed child (`python -s -S -P -B sandbox_boot.py ARGS`): stdlib only, no project imports.

ARGS: workdir program audit_hooks(0|1) cpu_s memory_bytes fsize_bytes nproc nonce_fd marker_fd exits_ok(0|1).
Only cheap modules are imported at start-up (json/traceback would double the start-up time of a tiny program).

Order: resource limits, the completion keeper, audit hooks (no sockets except AF_UNIX, no writes/renames/deletes
outside the work directory, no new programs, no signals to other processes, no ctypes, no tracing, no walking
the interpreter's objects or other threads' frames, no audit hooks of the program's own), then the program is
compiled and executed as `__main__`.

Completion marker: a check passes only when the program's code ran to its end. The parent passes a per-run
random nonce on `nonce_fd`; a keeper thread reads it and closes that descriptor before the program starts, so
the nonce lives only in the keeper's own frame (no file, environment, argv or open descriptor holds it). When
`exec` returns normally, the main thread calls `_report`, which wakes the keeper; the keeper writes the nonce to
`marker_fd` only if the main thread's stack is then exactly `_report <- main <- <module>` of this file (a
program that wakes the keeper itself has its own frames on that stack). `SystemExit`, `os._exit`, `exit()` and
`quit()` from the program never reach `_report`; with exits_ok=1 (stdin/stdout judging) `SystemExit(0|None)`
is a normal end. Exit codes: 0 ok, EXIT_ASSERTION when an AssertionError escaped (a failed test), EXIT_EARLY
when the program raised SystemExit, 1 any other error.
"""

from __future__ import annotations

import _thread
import gc
import os
import resource
import sys

EXIT_ASSERTION = 17
EXIT_EARLY = 18
_NONCE_BYTES = 64
_AF_UNIX = 1  # socket.AF_UNIX on Linux; the hook avoids importing socket
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {  # event -> indexes of path arguments that must stay inside the work directory
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,), "os.chown": (0,),
    "os.utime": (0,), "os.truncate": (0,), "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (1,),
    "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.move": (0, 1), "os.chflags": (0,),
}
_BLOCKED_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.forkpty",
                   "pty.spawn", "ctypes.", "os.startfile", "sys.settrace", "sys.setprofile",
                   "gc.get_objects", "gc.get_referrers", "gc.get_referents")


def set_limits(limits: dict[str, int]) -> None:
    cpu = limits["cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL one second later
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _real(path: object) -> str | None:
    """The resolved path, or None for an already-open descriptor."""
    if isinstance(path, int):
        return None
    return os.path.realpath(os.fsdecode(path) if isinstance(path, bytes) else str(path))


def _inside(path: object, workdir: str) -> bool:
    real = _real(path)
    return real is None or real in (workdir, "/dev/null") or real.startswith(workdir + os.sep)


def _is_write(mode: object, flags: object) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _check_open(path: object, mode: object, flags: object, workdir: str) -> None:
    real = _real(path)
    if real is None or real in (workdir, "/dev/null") or real.startswith(workdir + os.sep):
        return
    if real.startswith("/proc/") and os.path.basename(real) in ("mem", "environ", "pagemap"):
        raise PermissionError(f"sandbox: process memory and environment are not readable: {path!r}")
    if _is_write(mode, flags):
        raise PermissionError(f"sandbox: write outside the work directory: {path!r}")
    if mode is None and os.path.isdir(real):  # os.open of a directory: a dir_fd to write through
        raise PermissionError(f"sandbox: directory descriptors outside the work directory: {path!r}")


def make_hook(workdir: str, keeper: int):
    me = os.getpid()
    get_ident = _thread.get_ident

    def hook(event: str, args: tuple) -> None:
        if event == "sys.addaudithook":  # a program's hook would run in the keeper's thread, next to the nonce
            raise RuntimeError("sandbox: audit hooks are the sandbox's")  # RuntimeError: the hook is not added
        if event == "sys._current_frames" and get_ident() != keeper:
            raise PermissionError("sandbox: sys._current_frames is disabled")
        if event == "open":
            _check_open(args[0], args[1], args[2], workdir)
        if event in _PATH_EVENTS and not all(_inside(args[i], workdir) for i in _PATH_EVENTS[event]):
            raise PermissionError(f"sandbox: {event} outside the work directory")
        if event == "socket.__new__" and args[1] != _AF_UNIX:
            raise PermissionError("sandbox: network sockets are disabled")
        if event in ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto"):
            raise PermissionError("sandbox: network access is disabled")
        if event in ("os.kill", "os.killpg") and args[0] not in (me, os.getpid()):
            raise PermissionError("sandbox: signalling other processes is disabled")
        if event.startswith(_BLOCKED_EVENTS):
            raise PermissionError(f"sandbox: {event} is disabled")

    return hook


def _exit(code: object = None) -> None:
    raise SystemExit(code)


def install_site_builtins() -> None:
    """`exit()` / `quit()`, which `site` would define (the child runs with -S)."""
    import builtins

    builtins.exit = builtins.quit = _exit


def run_program(path: str, exits_ok: bool) -> object:
    """True when the program's code ran to its end (literal constants only: the program can rebind globals)."""
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    sys.argv = [path]
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    try:
        exec(compile(source, path, "exec"), namespace)
    except AssertionError:
        _print_exception()
        return 17
    except SystemExit as exc:
        if exits_ok:  # stdin/stdout judging: exit(0) is a normal end, another status a runtime error
            if exc.code is None or exc.code == 0:
                return True
            sys.stderr.write(f"SystemExit({exc.code!r})\n")
            return 1
        sys.stderr.write(f"sandbox: the program raised SystemExit({exc.code!r}) before its end\n")
        return 18
    except BaseException:
        _print_exception()
        return 1
    return True


def _print_exception() -> None:
    import traceback

    traceback.print_exc()


def _keeper(nonce_fd: int, marker_fd: int, locks: tuple, stack: tuple, main_ident: int) -> None:
    """Holds the nonce; writes it to marker_fd only if the main thread is in `_report` called from `main`.

    Everything it calls was bound before the program started (no builtins: the program may rebind them)."""
    current_frames, read, write, close, gc_disable = sys._current_frames, os.read, os.write, os.close, gc.disable
    ready, start, done = locks
    nonce = read(nonce_fd, _NONCE_BYTES)
    close(nonce_fd)
    ready.release()
    start.acquire()
    # No program code may run on this thread while `nonce` is a local: no collection (a program's __del__ or
    # weakref callback would run here and could walk back to this frame), and the frames dict (which holds
    # other threads' frames, whose release could run a finalizer) is dropped only after the nonce is gone.
    gc_disable()
    frames = None
    try:  # whatever happens (the program closed marker_fd), the main thread is released: no marker, a failure
        frames = current_frames()
        frame = frames.get(main_ident)
        for code in stack:
            if frame is None or frame.f_code is not code:
                break
            frame = frame.f_back
        else:
            if frame is None:
                write(marker_fd, nonce)
    finally:
        nonce = frame = None
        frames = None
        done.release()


def _report(start, done) -> None:
    start.release()  # C calls only: while the keeper looks, this frame is the main thread's top frame
    done.acquire()


def _finish_program() -> None:
    """What interpreter shutdown would do: join non-daemon threads, run atexit hooks, flush."""
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # the program closed or broke its stream
            pass


def start_keeper(nonce_fd: int, marker_fd: int) -> tuple[int, tuple]:
    """Start the keeper; return its thread id and the (start, done) locks `_report` uses."""
    frame, stack = sys._getframe(1), [_report.__code__]
    while frame is not None:
        stack.append(frame.f_code)
        frame = frame.f_back
    locks = tuple(_thread.allocate_lock() for _ in range(3))
    for lock in locks:
        lock.acquire()
    ident = _thread.start_new_thread(_keeper, (nonce_fd, marker_fd, locks, tuple(stack), _thread.get_ident()))
    locks[0].acquire()  # the keeper has read and closed the nonce descriptor
    return ident, locks[1:]


def main() -> int:
    workdir, program, hooks, *numbers, nonce_fd, marker_fd, exits_ok = sys.argv[1:]
    cpu_s, memory_bytes, fsize_bytes, nproc = (int(n) for n in numbers)
    os.chdir(workdir)
    keeper, (start, done) = start_keeper(int(nonce_fd), int(marker_fd))  # before RLIMIT_NPROC counts it
    set_limits({"cpu_s": cpu_s, "memory_bytes": memory_bytes, "fsize_bytes": fsize_bytes, "nproc": nproc})
    if hooks == "1":
        sys.addaudithook(make_hook(workdir, keeper))
    install_site_builtins()
    outcome = run_program(os.path.join(workdir, program), exits_ok == "1")
    if outcome is not True:
        return outcome
    _finish_program()
    _report(start, done)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
