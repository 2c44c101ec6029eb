"""The OS isolation modes of the sandbox and the command line that puts a program inside one.

Isolated modes (a private filesystem view; one of them is required unless unisolated runs are allowed):
  * `mountns+netns+pidns+nobody` (we run as root): new mount, network and PID namespaces; `sandbox_jail.py` builds
    a read-only root holding only the system directories, the Python installation and the work directory, then
    `setpriv` drops to `nobody` with no groups and no-new-privileges;
  * `userns+mountns+netns+pidns` (an unprivileged user): the same inside a user namespace; `setpriv` then drops
    every capability (bounding set cleared, `noroot` securebits locked) and sets no-new-privileges.
Unisolated modes (the host filesystem is visible to the program: anything world-readable, e.g. a 0644 secrets
file, can be read): `netns+pidns+nobody`, `nobody`, `userns+netns+pidns`, `plain`. They are offered only when
WMTP_SANDBOX_ALLOW_UNISOLATED=1 (`wmtp eval --allow-unisolated`), and results name the mode they ran under.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ISOLATION_ENV = "WMTP_SANDBOX_ISOLATION"
ALLOW_UNISOLATED_ENV = "WMTP_SANDBOX_ALLOW_UNISOLATED"
JAIL_SCRIPT = Path(__file__).with_name("sandbox_jail.py")
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/sbin")  # merged-/usr symlinks are recreated as symlinks
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
_NAMESPACES = ("--net", "--pid", "--fork", "--kill-child")
_NO_CAPS = ("--inh-caps=-all", "--bounding-set=-all", "--nnp",
            "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked")


class SandboxUnavailable(RuntimeError):
    """No acceptable isolation mode works here (the message says why and how to opt into an unisolated run)."""


def allow_unisolated() -> None:
    """Opt this process into unisolated modes (`--allow-unisolated`); detection then reports the mode it chose."""
    os.environ[ALLOW_UNISOLATED_ENV] = "1"


@dataclass(frozen=True)
class Isolation:
    name: str
    namespaces: tuple[str, ...]  # `unshare ...` placed before everything
    drop: tuple[str, ...]  # `setpriv ...` placed right before the interpreter (after the jail, if any)
    uid: int | None  # the unprivileged user the program runs as, None = ours
    network: Literal["namespace", "audit-hook"]
    filesystem: Literal["private-root", "host"]


def unisolated_allowed() -> bool:
    return os.environ.get(ALLOW_UNISOLATED_ENV, "") == "1"


def _nobody_uid() -> int:
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return 65534


def candidates(include_unisolated: bool) -> list[Isolation]:
    """Every mode this host might support, strongest first."""
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    found: list[Isolation] = []
    nobody = None
    if os.geteuid() == 0 and unshare and setpriv:
        uid = _nobody_uid()
        nobody = (setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--nnp", "--")
        found.append(Isolation("mountns+netns+pidns+nobody", (unshare, "--mount", *_NAMESPACES), nobody, uid,
                               "namespace", "private-root"))
    if unshare and setpriv:
        found.append(Isolation("userns+mountns+netns+pidns",
                               (unshare, "--user", "--map-root-user", "--mount", *_NAMESPACES),
                               (setpriv, *_NO_CAPS, "--"), None, "namespace", "private-root"))
    if not include_unisolated:
        return found
    if nobody is not None:
        found.append(Isolation("netns+pidns+nobody", (unshare, *_NAMESPACES), nobody, _nobody_uid(), "namespace",
                               "host"))
        found.append(Isolation("nobody", (), nobody, _nobody_uid(), "audit-hook", "host"))
    if unshare:
        found.append(Isolation("userns+netns+pidns", (unshare, "--user", *_NAMESPACES), (), None, "namespace",
                               "host"))
    found.append(Isolation("plain", (), (), None, "audit-hook", "host"))
    return found


def interpreter() -> str:
    """The real interpreter binary (a venv's `bin/python` is a symlink into the base installation)."""
    return os.path.realpath(sys.executable)


def read_only_paths(boot_script: Path) -> list[str]:
    """What the program's filesystem view holds read-only: system dirs, the Python installation, the boot script."""
    paths: list[str] = []
    for path in (*SYSTEM_DIRS, os.path.realpath(sys.base_prefix), os.path.dirname(interpreter()),
                 os.path.realpath(boot_script)):
        if not any(path == kept or path.startswith(kept.rstrip("/") + "/") for kept in paths):
            paths.append(path)
    return paths


def jail_command(newroot: Path, work: Path, boot_script: Path) -> list[str]:
    args = [interpreter(), "-s", "-S", "-P", "-B", str(JAIL_SCRIPT), str(newroot)]
    for path in read_only_paths(boot_script):
        args += ["--ro", path]
    for device in DEVICES:
        args += ["--dev", device]
    return [*args, "--rw", str(work), "--tmpfs", "/dev/shm", "--"]
