"""`wmtp convert-checkpoint`: Meta consolidated.pth + params.json + tokenizer.model -> fp16 safetensors model dir."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmtp_core import paths

GIB = 1024**3


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("convert-checkpoint", help="convert a Meta-format MTP checkpoint to the project layout")
    p.add_argument("--source", type=Path, required=True, help="dir with consolidated.pth, params.json, tokenizer.model")
    p.add_argument("--out", type=Path, default=paths.BASE_MODEL_DIR)
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    p.add_argument("--max-shard-gb", type=float, default=2.0, help="shard size limit (GiB); above it -> index")
    p.add_argument("--force", action="store_true", help="replace a different existing artifact at --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wmtp_core.artifacts.convert import convert_meta_checkpoint
    from wmtp_core.artifacts.errors import ArtifactError

    try:
        result = convert_meta_checkpoint(args.source, args.out, force=args.force, dtype=args.dtype,
                                         max_shard_bytes=int(args.max_shard_gb * GIB))
    except (ArtifactError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.message)
    if result.metadata.get("synthetic"):
        print("NOTE: the source is a SYNTHETIC checkpoint (random weights); metadata.json says synthetic: true")
    return 0
