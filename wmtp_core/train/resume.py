"""Choosing the checkpoint a run continues from, and refusing one it must not continue from.

Every candidate is verified (wmtp_core.train.state.verify_checkpoint: each file re-hashed against checkpoint.json).
`--resume auto` takes the newest intact checkpoint and says which corrupt ones it skipped; an explicit path that
fails verification is an error naming the file.

A checkpoint also records the training-relevant config (`training_config`) and its hash. Resuming with a config
whose training-relevant keys differ is refused, naming the keys, unless the caller allows it
(`--allow-config-change`). Not training-relevant (excluded): where things live (`paths`, `run.output_root`,
`run.run_name`), how the run is watched (`logging`, `train.progress_bar`), how often it checkpoints
(`train.checkpoint_every`, `train.keep_checkpoints`), the weight guard's bound (`train.max_param_norm_ratio`), the
device, and `stages` — which stages one invocation runs is stage-specific: the Stage 1 -> Stage 2 handoff runs
Stage 1 with `stages=[stage1]` and resumes Stage 2 from its checkpoint with the full list (a checkpoint's stage must
still be one the run executes). Paths are excluded because a location is not an identity (the same data and model
can sit elsewhere on another machine); their contents are recorded as provenance tags.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from wmtp_core.config import ResolvedConfig, config_dict, flatten
from wmtp_core.io import atomic_write_text, sha256_bytes
from wmtp_core.train.errors import RunSetupError
from wmtp_core.train.state import (
    Checkpoint,
    CheckpointError,
    list_checkpoints,
    parse_checkpoint,
    verify_checkpoint,
)

EXCLUDED_KEYS = ("stages", "paths", "logging", "run.output_root", "run.run_name", "run.device", "train.progress_bar",
                 "train.checkpoint_every", "train.keep_checkpoints", "train.max_param_norm_ratio")


def _excluded(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in EXCLUDED_KEYS)


def training_config(cfg: ResolvedConfig, world_size: int = 1) -> dict[str, Any]:
    """The flattened training-relevant config (see module docstring), JSON-ready.

    `train.batch_size` is per rank; what a run's data order and update size follow is the global batch, so it is
    recorded as `train.global_batch_size` (per-rank batch x ranks): a 2-rank checkpoint resumes in one process at
    twice the per-rank batch (DCP checkpoints load at any world size), and a changed global batch is refused."""
    flat = {k: v for k, v in flatten(config_dict(cfg)).items() if not _excluded(k)}
    flat["train.global_batch_size"] = flat.pop("train.batch_size") * world_size
    return dict(sorted(flat.items()))


def training_config_hash(training: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(training, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: saved -> current' for every training-relevant key that differs (or exists on one side only)."""
    missing = object()
    out = []
    for key in sorted(set(saved) | set(current)):
        before, after = saved.get(key, missing), current.get(key, missing)
        if before != after:
            show = [("(absent)" if v is missing else repr(v)) for v in (before, after)]
            out.append(f"{key}: {show[0]} -> {show[1]}")
    return out


def check_config(ckpt: Checkpoint, manifest: dict[str, Any], current: dict[str, Any], allow_change: bool) -> bool:
    """True when the checkpoint's training config equals `current`; else raise RunSetupError naming the differing
    keys, or (allow_change) warn and return False. A checkpoint that recorded no config cannot be compared: fails."""
    saved = manifest.get("config")
    if not isinstance(saved, dict):
        if allow_change:
            print(f"warning: {ckpt.path}: no training config recorded; resuming anyway (--allow-config-change)",
                  file=sys.stderr)
            return False
        raise RunSetupError(f"{ckpt.path}/checkpoint.json: field config: not recorded, so the config cannot be "
                            "compared; pass --allow-config-change to resume anyway")
    # keys excluded now are ignored on both sides (a checkpoint written before a key was excluded still matches)
    diffs = config_differences({k: v for k, v in saved.items() if not _excluded(k)}, current)
    if not diffs:
        return True
    listed = "; ".join(diffs)
    if not allow_change:
        raise RunSetupError(f"{ckpt.path}: config differs from the one it was trained with ({listed}); resume with "
                            "the same config, or pass --allow-config-change")
    print(f"warning: {ckpt.path}: resuming with a changed config ({listed}) (--allow-config-change)", file=sys.stderr)
    return False


def _newest_intact(existing: list[Checkpoint]) -> tuple[Checkpoint, dict[str, Any]] | None:
    failures = []
    for ckpt in reversed(existing):
        try:
            manifest = verify_checkpoint(ckpt)
        except CheckpointError as exc:
            failures.append(str(exc))
            continue
        for reason in failures:
            print(f"warning: skipping corrupt checkpoint: {reason}; falling back to {ckpt.path}", file=sys.stderr)
        return ckpt, manifest
    if failures:
        raise RunSetupError("no intact checkpoint to resume from: " + "; ".join(failures))
    return None


def resolve_resume(resume: str | None, checkpoint_dir: Path, stages: list[str], current: dict[str, Any],
                   allow_config_change: bool = False) -> tuple[Checkpoint | None, bool]:
    """(checkpoint, config unchanged). resume None: fresh (refuses to mix with existing checkpoints); "auto": the
    newest intact checkpoint, or fresh if there is none at all; else a checkpoint directory (verified)."""
    existing = list_checkpoints(checkpoint_dir, stages)
    if resume is None:
        if existing:
            raise RunSetupError(f"{checkpoint_dir}: already holds checkpoints (newest {existing[-1].path.name}); "
                                "pass --resume auto to continue it, or a different --run-name")
        return None, True
    if resume == "auto":
        found = _newest_intact(existing)
        if found is None:
            return None, True
        ckpt, manifest = found
    else:
        ckpt = parse_checkpoint(Path(resume))
        if ckpt.stage not in stages:
            raise RunSetupError(f"{ckpt.path}: checkpoint of {ckpt.stage}, which this config does not run "
                                f"({stages})")
        try:
            manifest = verify_checkpoint(ckpt)
        except CheckpointError as exc:
            raise RunSetupError(f"cannot resume: {exc}") from exc
    return ckpt, check_config(ckpt, manifest, current, allow_config_change)


RESOLVED_CONFIG = "config.resolved.yaml"


def write_resolved_config(run_dir: Path, text: str) -> Path:
    """Record the resolved config in the run directory without replacing an earlier invocation's: the first one
    is config.resolved.yaml; a later different one goes beside it as config.resolved.<n>.yaml (n = 1, 2, ...).
    Returns the file that holds `text`."""
    candidates = [run_dir / RESOLVED_CONFIG] + [run_dir / f"config.resolved.{n}.yaml" for n in range(1, 10_000)]
    for path in candidates:
        if not path.exists():
            return Path(atomic_write_text(path, text))
        if path.read_text(encoding="utf-8") == text:
            return path
    raise RunSetupError(f"{run_dir}: too many config.resolved.<n>.yaml files")
