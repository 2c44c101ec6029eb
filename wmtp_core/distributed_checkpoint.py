"""Sharded checkpoints with torch.distributed.checkpoint (DCP): each rank writes its own shards, and a run with a
different world size (or a plain single process) loads them, DCP resharding on the fly.

Layout of one checkpoint directory (the same path on every rank: a shared filesystem across nodes):
    dcp/               DCP files (.metadata, __<rank>_0.distcp): module weights + optimizer state, keyed by FQN
    state.pt           non-tensor training state written by rank 0 (step, scheduler, sampler, RNG, ...)
    checkpoint.json    format, world size at save time, module names, SHA256 of state.pt
The directory is written under `.<name>.partial` and renamed into place by rank 0 after every rank finished, so
a directory that exists is complete.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from wmtp_core.distributed import (
    barrier,
    gather_full_state_dict,
    get_world_size,
    is_initialized,
    is_main,
    reshard,
)
from wmtp_core.io import (
    atomic_write_bytes,
    atomic_write_json,
    install_path,
    read_json,
    remove_path,
    sha256_file,
)

DCP_DIR = "dcp"
STATE_FILE = "state.pt"
MANIFEST_FILE = "checkpoint.json"
FORMAT = "wmtp-dcp-v1"
_MODULES, _OPTIM = "modules", "optim"


def save_distributed_checkpoint(target: str | Path, modules: Mapping[str, nn.Module],
                                optimizer: torch.optim.Optimizer | None = None,
                                state: dict[str, Any] | None = None,
                                manifest_extra: dict[str, Any] | None = None) -> Path:
    """Write `target/` (see module docstring). Every rank calls it with the same arguments.

    `state` (any picklable object tree) is written by rank 0 only, so it must not hold per-rank data that
    matters; `manifest_extra` (JSON) is merged into checkpoint.json (e.g. stage and step)."""
    target = Path(target)
    partial = target.with_name(f".{target.name}.partial")
    if is_main():
        remove_path(partial)
        partial.mkdir(parents=True)
    barrier()
    container = nn.ModuleDict(dict(modules))
    with _single_process_quiet():
        dcp.save(_tensor_state(container, optimizer), checkpoint_id=partial / DCP_DIR, no_dist=not is_initialized())
    if is_main():
        _write_rank0_files(partial, list(modules), optimizer is not None, state or {}, manifest_extra or {})
        install_path(partial, target)
    barrier()
    return target


def load_distributed_checkpoint(target: str | Path, modules: Mapping[str, nn.Module],
                                optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Load weights (and optimizer state when given) into sharded or plain modules; returns the saved state."""
    target = Path(target)
    manifest = read_manifest(target)
    missing = sorted(set(modules) - set(manifest["modules"]))
    if missing:
        raise ValueError(f"{target / MANIFEST_FILE}: field modules: checkpoint has {manifest['modules']}, "
                         f"not {missing}")
    if optimizer is not None and not manifest["has_optimizer"]:
        raise ValueError(f"{target / MANIFEST_FILE}: field has_optimizer: saved without optimizer state")
    container = nn.ModuleDict(dict(modules))
    tensors = _tensor_state(container, optimizer)
    with _single_process_quiet():
        dcp.load(tensors, checkpoint_id=target / DCP_DIR, no_dist=not is_initialized())
    if optimizer is None:
        set_model_state_dict(container, tensors[_MODULES])
    else:
        set_state_dict(container, optimizer, model_state_dict=tensors[_MODULES], optim_state_dict=tensors[_OPTIM])
    return _read_state(target, manifest)


def read_manifest(target: str | Path) -> dict[str, Any]:
    path = Path(target) / MANIFEST_FILE
    manifest = read_json(path, ValueError, expect=dict, missing=lambda p: FileNotFoundError(
        f"{p}: missing; {target} is not a complete distributed checkpoint"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: field format: expected {FORMAT!r}, got {manifest.get('format')!r}")
    return manifest


def is_distributed_checkpoint(target: str | Path) -> bool:
    return (Path(target) / MANIFEST_FILE).is_file() and (Path(target) / DCP_DIR).is_dir()


@contextlib.contextmanager
def _single_process_quiet() -> Iterator[None]:
    """DCP warns that it 'assumes' a single process when there is no process group; here that is the intent."""
    with warnings.catch_warnings():
        if not is_initialized():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninit")
        yield


def _tensor_state(container: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    reshard(container)  # the registered parameters must be the sharded ones the optimizer holds
    if optimizer is None:
        return {_MODULES: get_model_state_dict(container)}
    model_state, optim_state = get_state_dict(container, optimizer)
    return {_MODULES: model_state, _OPTIM: optim_state}


def _write_rank0_files(partial: Path, names: list[str], has_optimizer: bool, state: dict[str, Any],
                       manifest_extra: dict[str, Any]) -> None:
    state_path = partial / STATE_FILE
    atomic_write_bytes(state_path, _torch_bytes(state))
    files = {p.relative_to(partial).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(partial.rglob("*")) if p.is_file()}
    atomic_write_json(partial / MANIFEST_FILE, {
        **manifest_extra, "format": FORMAT, "world_size": get_world_size(), "modules": names,
        "has_optimizer": has_optimizer, "state_sha256": sha256_file(state_path), "files": files,
    })


def _torch_bytes(obj: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _read_state(target: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    path = target / STATE_FILE
    digest = sha256_file(path)
    if digest != manifest["state_sha256"]:
        raise ValueError(f"{path}: SHA256 {digest} does not match {MANIFEST_FILE} ({manifest['state_sha256']})")
    # Our own file written by rank 0; full unpickling (RNG states are Python objects) is intended.
    return torch.load(path, map_location="cpu", weights_only=False)


def export_full_safetensors(model: nn.Module, path: str | Path, dtype: torch.dtype | None = None) -> Path | None:
    """Gather the full model on rank 0 and write it as one safetensors file (atomically). Every rank calls it;
    returns the path on rank 0 and None elsewhere."""
    from safetensors.torch import save

    full = gather_full_state_dict(model)
    if full is None:
        return None
    tensors = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in full.items()}
    return atomic_write_bytes(path, save(tensors, metadata={"format": "pt"}))
