"""The micro MTP shape the CPU benchmarks share: its command-line flags and the ModelArgs they describe."""

from __future__ import annotations

import argparse
from typing import Any


def add_shape_args(p: argparse.ArgumentParser) -> None:
    """--dim --n-heads --trunk-layers --n-future --ffn, defaulting to the micro model's shape."""
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--trunk-layers", type=int, default=2)
    p.add_argument("--n-future", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024)


def micro_model_args(a: argparse.Namespace, vocab: int, max_seq_len: int) -> Any:
    """ModelArgs of that shape (trunk + next-token block + extra heads), FFN hidden exactly `--ffn`."""
    from vendor.meta_llama.model import ModelArgs
    from wmtp_core.artifacts.dims import with_ffn_hidden

    args = ModelArgs(dim=a.dim, n_layers=a.trunk_layers + a.n_future, n_heads=a.n_heads, vocab_size=vocab,
                     n_future_tokens=a.n_future, max_seq_len=max_seq_len)
    return with_ffn_hidden(args, a.ffn)
