"""Runs INSIDE the sandboxed child (`python -s -S -P -B sandbox_boot.py ARGS`): stdlib only, no project imports.

ARGS: workdir program audit_hooks(0|1) cpu_s memory_bytes fsize_bytes nproc. Only cheap modules are imported
at start-up (json/traceback would double the start-up time of a tiny program).

Order: resource limits, then audit hooks (no sockets except AF_UNIX, no writes/renames/deletes outside the work
directory, no new programs, no signals to other processes, no ctypes), then the program is compiled and executed
as `__main__`. Exit codes: 0 ok, EXIT_ASSERTION when an AssertionError escaped (a failed test), 1 any other error.
"""

from __future__ import annotations

import os
import resource
import sys

EXIT_ASSERTION = 17
_AF_UNIX = 1  # socket.AF_UNIX on Linux; the hook avoids importing socket
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {  # event -> indexes of path arguments that must stay inside the work directory
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,), "os.chown": (0,),
    "os.utime": (0,), "os.truncate": (0,), "os.rename": (0, 1), "os.link": (0, 1), "os.symlink": (1,),
    "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.move": (0, 1), "os.chflags": (0,),
}
_BLOCKED_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.forkpty",
                   "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "os.startfile")


def set_limits(limits: dict[str, int]) -> None:
    cpu = limits["cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL one second later
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _inside(path: object, workdir: str) -> bool:
    if isinstance(path, int):
        return True  # an already-open descriptor
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    real = os.path.realpath(str(path))
    return real in (workdir, "/dev/null") or real.startswith(workdir + os.sep)


def _is_write(mode: object, flags: object) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def make_hook(workdir: str):
    me = os.getpid()

    def hook(event: str, args: tuple) -> None:
        if event == "open" and not _inside(args[0], workdir):
            if _is_write(args[1], args[2]):
                raise PermissionError(f"sandbox: write outside the work directory: {args[0]!r}")
            if args[1] is None and os.path.isdir(args[0]):  # os.open of a directory: a dir_fd to write through
                raise PermissionError(f"sandbox: directory descriptors outside the work directory: {args[0]!r}")
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


def run_program(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    sys.argv = [path]
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    try:
        exec(compile(source, path, "exec"), namespace)
    except AssertionError:
        _print_exception()
        return EXIT_ASSERTION
    except SystemExit:
        raise
    except BaseException:
        _print_exception()
        return 1
    return 0


def _print_exception() -> None:
    import traceback

    traceback.print_exc()


def main() -> int:
    workdir, program, hooks, *numbers = sys.argv[1:]
    cpu_s, memory_bytes, fsize_bytes, nproc = (int(n) for n in numbers)
    os.chdir(workdir)
    set_limits({"cpu_s": cpu_s, "memory_bytes": memory_bytes, "fsize_bytes": fsize_bytes, "nproc": nproc})
    if hooks == "1":
        sys.addaudithook(make_hook(workdir))
    install_site_builtins()
    code = run_program(os.path.join(workdir, program))
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # the program closed or broke its stdout
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
