"""`wmtp convert-reference`: Hugging Face LLaMA model (Rho-1 reference or optional reward) -> project layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmtp_core import paths

GIB = 1024**3


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert-reference",
                              help="convert an HF LLaMA-format model (Rho-1 reference / reward) to the project layout")
    p.add_argument("--source", type=Path, required=True, help="dir with config.json, weights (+index), tokenizer.model")
    p.add_argument("--out", type=Path, help="default: the reference (or reward) model dir under storage/models")
    p.add_argument("--kind", choices=("reference", "reward"), default="reference",
                   help="reward: metadata status 'optional'")
    p.add_argument("--base", type=Path, default=paths.BASE_MODEL_DIR,
                   help="converted base whose tokenizer must be identical (skipped when absent)")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    p.add_argument("--max-shard-gb", type=float, default=2.0)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wmtp_core.artifacts.convert_reference import convert_hf_llama
    from wmtp_core.artifacts.errors import ArtifactError
    from wmtp_core.artifacts.layout import ModelLayout

    out = args.out or (paths.REFERENCE_MODEL_DIR if args.kind == "reference" else paths.REWARD_MODEL_DIR)
    base = args.base if ModelLayout(args.base).exists() else None
    if base is None:
        print(f"NOTE: {args.base} holds no converted base; tokenizer_shared_with is not recorded", file=sys.stderr)
    try:
        result = convert_hf_llama(args.source, out, kind=args.kind, shared_with=base, force=args.force,
                                  dtype=args.dtype, max_shard_bytes=int(args.max_shard_gb * GIB))
    except (ArtifactError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.message)
    return 0
