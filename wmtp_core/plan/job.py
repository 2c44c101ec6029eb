"""The memory check a flow runs before it submits `wmtp train <train_args>` to GPUs (a block declaring them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wmtp_core.plan.advice import MemoryPlanError, Verdict, job_memory_check


def _read_args(model_dir: Path):
    from vendor.meta_llama.model import ModelArgs

    path = Path(model_dir) / "params.json"
    if not path.is_file():
        raise MemoryPlanError(f"{path}: not found; cannot plan the job's memory without the model's dims")
    try:
        return ModelArgs.from_json(path)
    except (TypeError, ValueError) as exc:
        raise MemoryPlanError(f"{path}: {exc}") from exc


def check_train_job(train_args: list[str], gpus: int, gpu_memory_gb: float, model_dir: Path,
                    reference_dir: Path | None = None) -> Verdict:
    """Resolve the config `wmtp train` would build from `train_args`, plan it with the dims of the (local) model
    and reference dirs, and raise MemoryPlanError naming what would fit when it does not fit."""
    from wmtp_core.cli.commands import train
    from wmtp_core.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="wmtp", add_help=False)
    train.register(parser.add_subparsers(dest="command"))
    ns, _ = parser.parse_known_args(["train", *train_args])
    try:
        cfg = load_config(ns.config, ns.recipe, ns.preset, train.cli_overrides(ns))
    except ConfigError as exc:
        raise MemoryPlanError(f"cannot plan the job: {exc}") from exc
    reference = _read_args(reference_dir) if reference_dir is not None else None
    return job_memory_check(cfg, gpus, gpu_memory_gb, args=_read_args(model_dir), reference_args=reference)
