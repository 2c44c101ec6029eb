"""Checkpoints: weights as safetensors, everything else (optimizer, scheduler, RNG, data position, step,
strategy/EMA state) in a separate `state.pt`, plus `checkpoint.json` listing every file with its SHA256.

Layout: <output_dir>/checkpoints/<stage>-step-<NNNNNNN>/{model.safetensors, value_head.safetensors?, state.pt,
checkpoint.json}. A checkpoint directory is written under a temporary name and renamed into place, so a
directory that exists is complete; a crash mid-save leaves the previous checkpoints untouched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wmtp_core.io import atomic_output, sha256_file

STATE_FILE = "state.pt"
MANIFEST_FILE = "checkpoint.json"
_NAME = re.compile(r"^(?P<stage>stage\d)-step-(?P<step>\d{7})$")


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
                    state: dict[str, Any], keep: int = 2) -> Checkpoint:
    """Write one checkpoint atomically, then prune to the newest `keep` of this stage."""
    target = root / checkpoint_name(stage, step)
    with atomic_output(target) as tmp:
        tmp.mkdir(parents=True)
        for name, module in modules.items():
            save_file(_cpu_state(module), str(tmp / f"{name}.safetensors"))
        torch.save(state, tmp / STATE_FILE)
        files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir())}
        (tmp / MANIFEST_FILE).write_text(json.dumps({"stage": stage, "step": step, "files": files}, indent=2))
    _prune(root, stage, keep)
    return parse_checkpoint(target)


def save_sharded_checkpoint(root: Path, stage: str, step: int, modules: dict[str, nn.Module],
                            optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int = 2) -> Checkpoint:
    """Under torchrun: DCP shards from every rank (weights + optimizer), state.pt and checkpoint.json from rank 0
    (see wmtp_core.distributed_checkpoint); same directory name, so listing and `--resume auto` work unchanged."""
    from wmtp_core.distributed import barrier, is_main
    from wmtp_core.distributed_checkpoint import save_distributed_checkpoint

    target = root / checkpoint_name(stage, step)
    save_distributed_checkpoint(target, modules, optimizer, state, manifest_extra={"stage": stage, "step": step})
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
