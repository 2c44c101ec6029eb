"""`wmtp train-tokenizer`: deterministic SentencePiece code tokenizer trained on the shipped corpus."""

from __future__ import annotations

import argparse
from pathlib import Path

from wmtp_core import paths


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-tokenizer", help="train the 8000-piece code tokenizer (deterministic)")
    p.add_argument(
        "--datasets-root", type=Path, default=paths.DATASETS_ROOT, help="where <source>/source/ live"
    )
    p.add_argument("--out", type=Path, default=paths.CODE_TOKENIZER, help="output .model path")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--model-type", choices=["bpe", "unigram"], default="bpe")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import hashlib
    import sys

    from wmtp_core.data.tokenizer_train import TokenizerSpec, train_code_tokenizer

    spec = TokenizerSpec(vocab_size=args.vocab_size, model_type=args.model_type)
    try:
        out = train_code_tokenizer(args.datasets_root, args.out, spec)
    except (RuntimeError, ValueError, OSError) as err:  # sentencepiece reports bad specs as RuntimeError
        print(f"train-tokenizer: error: {err}", file=sys.stderr)
        return 2
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} ({spec.vocab_size} pieces, {spec.model_type}) sha256={digest}")
    return 0
