"""Checkpoints: weights as safetensors, everything else (optimizer, scheduler, RNG, data position, step,
strategy/EMA state) in a separate `state.pt`, plus `checkpoint.json` listing every file with its SHA256.

Layout: <output_dir>/checkpoints/<stage>-step-<NNNNNNN>/{model.safetensors, value_head.safetensors?, state.pt,
checkpoint.json}. A checkpoint directory is written under a temporary name, fsynced and renamed into place, so a
directory that exists is complete; a crash mid-save leaves the previous checkpoints untouched.

Before anything of a checkpoint is loaded, `verify_checkpoint` re-hashes every file against checkpoint.json
(the same for distributed checkpoints, whose manifest lists the DCP shards): a flipped bit fails naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wmtp_core.io import atomic_output, read_json, sha256_file

STATE_FILE = "state.pt"
MANIFEST_FILE = "checkpoint.json"
_NAME = re.compile(r"^(?P<stage>stage\d)-step-(?P<step>\d{7})$")


class CheckpointError(ValueError):
    """A checkpoint that is corrupt or cannot be verified (the message names the file and the reason)."""


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed (disk full, permissions); the message names the path and the errno."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    stage: str
    step: int

    def weights_file(self, module: str) -> Path:
        return self.path / f"{module}.safetensors"

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE


def checkpoint_name(stage: str, step: int) -> str:
    return f"{stage}-step-{step:07d}"


def parse_checkpoint(path: Path) -> Checkpoint:
    match = _NAME.match(Path(path).name)
    if match is None or not (Path(path) / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint directory (expected <stage>-step-NNNNNNN/ "
                                f"with {STATE_FILE})")
    return Checkpoint(Path(path), match["stage"], int(match["step"]))


def list_checkpoints(root: Path, stage_order: list[str]) -> list[Checkpoint]:
    """Complete checkpoints under `root`, oldest first (by stage order, then step)."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if _NAME.match(child.name) and (child / STATE_FILE).is_file():
            ckpt = parse_checkpoint(child)
            if ckpt.stage in stage_order:
                found.append(ckpt)
    return sorted(found, key=lambda c: (stage_order.index(c.stage), c.step))


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(root: Path, stage: str, step: int, modules: dict[str, nn.Module],
                    state: dict[str, Any], keep: int = 2, manifest_extra: dict[str, Any] | None = None) -> Checkpoint:
    """Write one checkpoint atomically, then prune to the newest `keep` of this stage. `manifest_extra` (JSON) is
    merged into checkpoint.json (e.g. the training config and its hash). An OSError (disk full, ...) becomes a
    CheckpointWriteError naming the path and errno; nothing of the checkpoint is left behind."""
    target = root / checkpoint_name(stage, step)
    with write_errors(target):
        with atomic_output(target) as tmp:
            tmp.mkdir(parents=True)
            for name, module in modules.items():
                save_file(_cpu_state(module), str(tmp / f"{name}.safetensors"))
            torch.save(state, tmp / STATE_FILE)
            files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir())}
            manifest = {**(manifest_extra or {}), "stage": stage, "step": step, "files": files}
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    _prune(root, stage, keep)
    return parse_checkpoint(target)


@contextlib.contextmanager
def write_errors(target: Path) -> Iterator[None]:
    """Turn an OSError raised while writing `target` into a CheckpointWriteError naming the path and errno."""
    try:
        yield
    except OSError as exc:
        code = errno.errorcode.get(exc.errno, "unknown errno") if exc.errno is not None else "unknown errno"
        where = f"{exc.filename}: " if exc.filename else ""
        raise CheckpointWriteError(f"{target}: checkpoint not written: {where}[{code}] "
                                   f"{exc.strerror or exc}") from exc


def verify_checkpoint(ckpt: Checkpoint) -> dict[str, Any]:
    """Re-hash every file of `ckpt` against its checkpoint.json (size and SHA256; no unlisted file); returns the
    manifest. Raises CheckpointError naming the first bad file; a missing or unreadable manifest also fails."""
    manifest = read_json(ckpt.path / MANIFEST_FILE, CheckpointError, expect=dict, missing=lambda p: CheckpointError(
        f"{p}: missing; the checkpoint cannot be verified"))
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{ckpt.path / MANIFEST_FILE}: field files: no file hashes recorded; "
                              "the checkpoint cannot be verified")
    present = {p.relative_to(ckpt.path).as_posix() for p in ckpt.path.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    unlisted = sorted(present - set(files))
    if unlisted:
        raise CheckpointError(f"{ckpt.path / unlisted[0]}: not listed in {MANIFEST_FILE}")
    for rel, entry in sorted(files.items()):
        _verify_file(ckpt.path / rel, entry)
    return manifest


def _verify_file(path: Path, entry: Any) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise CheckpointError(f"{path}: no SHA256 recorded in {MANIFEST_FILE}")
    if not path.is_file():
        raise CheckpointError(f"{path}: listed in {MANIFEST_FILE} but missing")
    size = path.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        raise CheckpointError(f"{path}: {size} bytes, {MANIFEST_FILE} records {entry['bytes']}; truncated or replaced")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CheckpointError(f"{path}: SHA256 {digest} differs from {MANIFEST_FILE} ({entry['sha256']}); "
                              "the file is corrupted")


def save_sharded_checkpoint(root: Path, stage: str, step: int, modules: dict[str, nn.Module],
                            optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int = 2,
                            manifest_extra: dict[str, Any] | None = None) -> Checkpoint:
    """Under torchrun: DCP shards from every rank (weights + optimizer), state.pt and checkpoint.json from rank 0
    (see wmtp_core.distributed_checkpoint); same directory name, so listing and `--resume auto` work unchanged."""
    from wmtp_core.distributed import barrier, is_main
    from wmtp_core.distributed_checkpoint import save_distributed_checkpoint

    target = root / checkpoint_name(stage, step)
    with write_errors(target):
        save_distributed_checkpoint(target, modules, optimizer, state,
                                    manifest_extra={**(manifest_extra or {}), "stage": stage, "step": step})
    if is_main():
        _prune(root, stage, keep)
    barrier()
    return parse_checkpoint(target)


def _prune(root: Path, stage: str, keep: int) -> None:
    import shutil

    same_stage = [c for c in list_checkpoints(root, [stage])]
    for old in same_stage[:-keep] if keep > 0 else []:
        shutil.rmtree(old.path, ignore_errors=True)


def load_weights(ckpt: Checkpoint, name: str, module: nn.Module) -> None:
    path = ckpt.weights_file(name)
    if not path.is_file():
        raise FileNotFoundError(f"{ckpt.path}: checkpoint has no {path.name}")
    tensors = load_file(str(path))
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the module (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")


def load_state(ckpt: Checkpoint) -> dict[str, Any]:
    """The non-weight state; our own file, so full unpickling (RNG states are Python objects) is intended."""
    return torch.load(ckpt.state_file, map_location="cpu", weights_only=False)


def checkpoint_reference(ckpt: Checkpoint) -> dict[str, Any]:
    """Paths + SHA256 of a checkpoint's files (what MLflow records instead of the weights)."""
    manifest = json.loads((ckpt.path / MANIFEST_FILE).read_text())
    return {"path": str(ckpt.path), "stage": ckpt.stage, "step": ckpt.step,
            "files": {n: {**e, "path": str(ckpt.path / n)} for n, e in manifest["files"].items()}}
