"""`wmtp plan`: predicted per-GPU peak memory of a training step, fits / does not fit, and what would fit."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plan", help="predict per-GPU memory of a training step before paying for GPUs",
                              description="Memory plan of Stage 2 (the largest stage) at the configured batch and "
                                          "sequence length; exit 0 when it fits, 3 when it does not.")
    p.add_argument("--config", type=Path, default=Path("configs/defaults.yaml"), help="defaults YAML")
    p.add_argument("--recipe", type=Path, required=True, help="experiment recipe YAML")
    p.add_argument("--preset", default=None, help="preset name (configs/presets/<name>.yaml) or YAML path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field (dotted key; YAML value); repeatable")
    p.add_argument("--gpus", type=int, default=1, help="GPUs (FSDP2 ranks)")
    p.add_argument("--gpu-memory", default="80GB", help="memory per GPU, e.g. 80GB (read as GiB)")
    p.add_argument("--shape", default=None, help="named model shape instead of the model dir's params.json "
                                                  "(7B_1T_4)")
    p.add_argument("--fp32", action="store_true", help="fp32 compute (CPU) instead of CUDA bf16 autocast")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from wmtp_core.config import ConfigError, load_config
    from wmtp_core.plan.advice import (
        MemoryPlanError,
        format_verdict,
        inputs_from_config,
        parse_memory,
        verdict,
    )

    try:
        cfg = load_config(args.config, args.recipe, args.preset, list(args.overrides))
        inputs = inputs_from_config(cfg, args.gpus, bf16=not args.fp32, shape=args.shape)
        v = verdict(inputs, parse_memory(args.gpu_memory))
    except (ConfigError, MemoryPlanError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"experiment": cfg.experiment, **v.to_json()}, indent=2))
    else:
        print(format_verdict(v, header=f"wmtp plan: {cfg.experiment} ({args.recipe})"))
    return 0 if v.fits else 3
