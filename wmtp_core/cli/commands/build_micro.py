"""`wmtp build-micro`: slice the converted base into the small micro model (`--use-micro-model` loads it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmtp_core import paths


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("build-micro", help="derive the micro MTP model from the converted base")
    p.add_argument("--base", type=Path, default=paths.BASE_MODEL_DIR)
    p.add_argument("--out", type=Path, default=None,
                   help=f"default: {paths.MICRO_MODEL_DIR} ({paths.MICRO_REFERENCE_DIR} with --reference)")
    p.add_argument("--reference", action="store_true",
                   help="build the micro-world Rho-1 reference instead (its own seed, half the FFN width)")
    p.add_argument("--tokenizer", type=Path, default=paths.CODE_TOKENIZER, help="micro vocabulary (SentencePiece)")
    p.add_argument("--plan", choices=("default", "tiny"), default="default",
                   help="default: dim 512, FFN 1024, fp16 (< 50 MB); tiny: dim 64 for tests / smoke flows")
    p.add_argument("--dim", type=int)
    p.add_argument("--trunk-layers", type=int, help="number of trunk blocks kept (>= 2)")
    p.add_argument("--n-future", type=int)
    p.add_argument("--ffn", type=int, help="FFN hidden size kept")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--target-device", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--seed", type=int)
    p.add_argument("--force", action="store_true", help="replace a different existing micro model")
    p.set_defaults(func=run)


def plan_from_args(args: argparse.Namespace):  # -> MicroPlan (lazy import)
    from wmtp_core.artifacts.micro import PLANS
    from wmtp_core.experiments import MICRO_REFERENCE_FFN, MICRO_REFERENCE_SEED

    if args.reference:
        args.ffn = MICRO_REFERENCE_FFN[args.plan] if args.ffn is None else args.ffn
        args.seed = MICRO_REFERENCE_SEED if args.seed is None else args.seed
    fields = {"dim": args.dim, "n_trunk_layers": args.trunk_layers, "n_future_tokens": args.n_future,
              "ffn_hidden_dim": args.ffn, "dtype": args.dtype, "target_device": args.target_device,
              "seed": args.seed}
    return PLANS[args.plan](**{k: v for k, v in fields.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from wmtp_core.artifacts.errors import ArtifactError
    from wmtp_core.artifacts.micro import build_micro_model

    try:
        out = args.out or (paths.MICRO_REFERENCE_DIR if args.reference else paths.MICRO_MODEL_DIR)
        result = build_micro_model(args.base, out, tokenizer_model=args.tokenizer, plan=plan_from_args(args),
                                   force=args.force)
    except (ArtifactError, FileNotFoundError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.message)
    return 0
