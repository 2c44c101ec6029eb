"""Runs INSIDE fresh mount/net/pid namespaces, still privileged there, before the program: stdlib only.

`python -s -S -P -B sandbox_jail.py NEWROOT [--ro PATH]... [--dev PATH]... [--rw PATH]... [--tmpfs PATH]... -- CMD...`

Builds a filesystem view with nothing of the user's on an empty tmpfs at NEWROOT: each `--ro` path (system
directories, the Python installation, the boot script) is bind-mounted read-only at the same path, each `--dev`
node (/dev/null, ...) writable but nosuid/noexec, each `--rw` path (the program's work directory) writable, each
`--tmpfs` path (/dev/shm, for multiprocessing's semaphores) a fresh private 16 MiB tmpfs;
symlinks (merged-/usr `/bin`, `/lib64`) are recreated as symlinks. The tmpfs is then made read-only and the
process chroots into it and execs COMMAND (which drops the privileges: `setpriv`). Home directories, the
repository, /tmp, /proc, /etc and every other path simply do not exist in that view.

Any failure exits with EXIT_JAIL and a one-line reason on stderr: the program never runs unconfined.
"""

from __future__ import annotations

import ctypes
import os
import sys

EXIT_JAIL = 125
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
_TMPFS = -1  # marks a `--tmpfs` entry among the bind flags
_LIBC = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    args = [None if s is None else os.fsencode(s) for s in (source, target, fstype, data)]
    if _LIBC.mount(args[0], args[1], args[2], ctypes.c_ulong(flags), args[3]) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source or ''} on {target}: {os.strerror(errno)}")


def _bind(path: str, newroot: str, flags: int) -> None:
    target = newroot + path
    if os.path.islink(path):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "x").close()
    _mount(path, target, None, MS_BIND | MS_REC)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | flags)


def parse(argv: list[str]) -> tuple[str, list[tuple[str, int]], list[str]]:
    newroot, rest = argv[0], argv[1:]
    split = rest.index("--")
    options, command = rest[:split], rest[split + 1:]
    flags = {"--ro": MS_RDONLY | MS_NOSUID | MS_NODEV, "--dev": MS_NOSUID | MS_NOEXEC, "--rw": MS_NOSUID | MS_NODEV,
             "--tmpfs": _TMPFS}
    binds = [(options[i + 1], flags[options[i]]) for i in range(0, len(options), 2)]
    return newroot, binds, command


def build(newroot: str, binds: list[tuple[str, int]]) -> None:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates back to the host
    _mount("tmpfs", newroot, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
    for path, flags in binds:
        if flags == _TMPFS:
            os.makedirs(newroot + path, exist_ok=True)
            _mount("tmpfs", newroot + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=16m")
        elif os.path.lexists(path):
            _bind(path, newroot, flags)
    _mount(None, newroot, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=755,size=1m")
    os.chroot(newroot)
    os.chdir("/")


def main() -> int:
    try:
        newroot, binds, command = parse(sys.argv[1:])
        build(newroot, binds)
        os.execv(command[0], command)
    except (OSError, ValueError, IndexError, KeyError) as exc:
        print(f"sandbox jail: cannot build the filesystem view: {exc}", file=sys.stderr)
    return EXIT_JAIL


if __name__ == "__main__":
    sys.exit(main())
