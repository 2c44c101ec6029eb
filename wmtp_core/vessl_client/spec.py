"""VESSL run spec (the YAML `vessl run create -f` takes): resources, image, volumes, command, env by reference."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

import yaml

from wmtp_core.secrets import is_secret_key

VOLUME_URL = re.compile(r"^volume://[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(/.*)?$")
RUN_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class RunSpecError(ValueError):
    """An invalid run spec field (the message names the field)."""


def train_command(train_args: Sequence[str], gpus: int) -> list[str]:
    """`wmtp train ARGS` for one GPU; `torchrun --nproc-per-node=N -m wmtp_core.cli train ARGS` for N > 1."""
    if gpus < 1:
        raise RunSpecError(f"gpus: must be >= 1, got {gpus}")
    if gpus == 1:
        return ["wmtp", "train", *train_args]
    return ["torchrun", "--standalone", f"--nproc-per-node={gpus}", "-m", "wmtp_core.cli", "train", *train_args]


def _check_mounts(field: str, mounts: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for mount, url in mounts.items():
        if not mount.startswith("/"):
            raise RunSpecError(f"{field}: mount path {mount!r} must be absolute")
        if not VOLUME_URL.match(url):
            raise RunSpecError(f"{field}: {url!r} is not volume://<storage>/<volume>[/path]")
        out[mount.rstrip("/") + "/"] = url
    return out


def _env_section(env: Mapping[str, str], secret_env: Mapping[str, str]) -> dict[str, object]:
    section: dict[str, object] = {}
    for key, value in env.items():
        if is_secret_key(key):
            raise RunSpecError(f"env.{key}: looks like a secret; pass it by reference in secret_env instead")
        section[key] = str(value)
    for key, secret_name in secret_env.items():
        if key in section:
            raise RunSpecError(f"secret_env.{key}: also given as a plain env value")
        section[key] = {"secret": secret_name}  # value resolved by VESSL from its secret store
    return section


def build_run_spec(
    *,
    name: str,
    cluster: str,
    preset: str,
    image: str,
    command: Sequence[str],
    workdir: str = "/app",
    env: Mapping[str, str] | None = None,
    secret_env: Mapping[str, str] | None = None,
    imports: Mapping[str, str] | None = None,
    exports: Mapping[str, str] | None = None,
    description: str = "",
) -> dict[str, object]:
    """The run spec as a dict (see `spec_to_yaml`). Secret values never appear: only secret names."""
    if not RUN_NAME.match(name):
        raise RunSpecError(f"name: {name!r} must be lowercase letters, digits and '-' (<= 63 chars)")
    for field, value in (("cluster", cluster), ("preset", preset), ("image", image)):
        if not value:
            raise RunSpecError(f"{field}: must not be empty")
    if not command:
        raise RunSpecError("command: must not be empty")
    spec: dict[str, object] = {
        "name": name,
        "description": description or f"WMTP job {name}",
        "resources": {"cluster": cluster, "preset": preset},
        "image": image,
        "import": _check_mounts("import", imports or {}),
        "export": _check_mounts("export", exports or {}),
        "run": [{"command": shlex.join(command), "workdir": workdir}],
        "env": _env_section(env or {}, secret_env or {}),
    }
    return spec


def spec_to_yaml(spec: Mapping[str, object]) -> str:
    return yaml.safe_dump(dict(spec), sort_keys=False, default_flow_style=False)
