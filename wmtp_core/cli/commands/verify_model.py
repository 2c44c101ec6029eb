"""`wmtp verify-model DIR`: recompute every SHA256 against metadata.json, then load the model and run it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("verify-model", help="check a model dir's files against metadata.json and load it")
    p.add_argument("model_dir", type=Path)
    p.add_argument("--fast", action="store_true", help="trust the size + mtime hash cache for unchanged files")
    p.add_argument("--no-load", action="store_true", help="only check files, do not load the model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wmtp_core.artifacts.errors import ArtifactError
    from wmtp_core.artifacts.verify import verify_model_dir

    try:
        report = verify_model_dir(args.model_dir, full=not args.fast)
        print(report.summary())
        if not args.no_load:
            print(load_and_run(args.model_dir))
    except (ArtifactError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def load_and_run(model_dir: Path) -> str:
    """Load (without re-hashing) and run one forward pass; raise ArtifactError on non-finite logits."""
    import torch

    from wmtp_core.artifacts.errors import ArtifactError
    from wmtp_core.model.adapter import MetaLlamaMTPAdapter

    adapter = MetaLlamaMTPAdapter.from_pretrained(model_dir, verify=False)
    tokens = torch.tensor([adapter.tokenizer.encode("def main():\n    print(1)\n", bos=True)])
    with torch.no_grad():
        logits = adapter.forward(tokens)  # (1, S, F, V)
    if not torch.isfinite(logits).all():
        raise ArtifactError(f"{model_dir}: forward pass produced non-finite logits")
    return (f"{model_dir}: loaded {adapter.metadata['parameter_count']} parameters; forward on "
            f"{tokens.shape[1]} tokens -> logits {tuple(logits.shape)} finite")
