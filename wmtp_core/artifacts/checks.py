"""State-dict checks shared by the converters and the loader: keys, shapes, dtypes, tokenizer vocabulary."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vendor.meta_llama.model import ROPE_FREQS_KEY, ModelArgs, expected_shapes
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core.artifacts.errors import ArtifactError, ConfigMismatch, StateDictMismatch, TokenizerMismatch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
TOLERATED_KEYS = (ROPE_FREQS_KEY,)
_LIST_LIMIT = 20


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def check_state_shapes(shapes: Mapping[str, tuple[int, ...]], args: ModelArgs, where: str) -> list[str]:
    """Compare key -> shape with the layout `args` requires; return tolerated extras (e.g. `rope.freqs`).

    Raises StateDictMismatch listing missing keys, unexpected keys and wrong shapes together.
    """
    expected = expected_shapes(args)
    tolerated = sorted(k for k in shapes if k in TOLERATED_KEYS)
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected) - set(tolerated))
    wrong = sorted(f"{k}: {tuple(shapes[k])} (expected {expected[k]})"
                   for k in set(expected) & set(shapes) if tuple(shapes[k]) != expected[k])
    problems = []
    if missing:
        problems.append(f"missing keys [{_listing(missing)}]")
    if unexpected:
        problems.append(f"unexpected keys [{_listing(unexpected)}]")
    if wrong:
        problems.append(f"wrong shapes [{_listing(wrong)}]")
    if problems:
        raise StateDictMismatch(f"{where}: state dict does not match params (dim={args.dim}, "
                                f"n_layers={args.n_layers}, n_future_tokens={args.n_future_tokens}): "
                                + "; ".join(problems))
    return tolerated


def check_float_dtypes(tensors: Mapping[str, torch.Tensor], where: str) -> set[str]:
    """Every tensor must be fp16/bf16/fp32; returns the dtype names seen."""
    bad = sorted(f"{k}: {t.dtype}" for k, t in tensors.items() if t.dtype not in FLOAT_DTYPES)
    if bad:
        raise ArtifactError(f"{where}: non-floating tensors (expected float16/bfloat16/float32): {_listing(bad)}")
    return {str(t.dtype).removeprefix("torch.") for t in tensors.values()}


def check_tokenizer_vocab(tokenizer: Tokenizer, args: ModelArgs, where: str) -> None:
    if tokenizer.n_words != args.vocab_size:
        raise ConfigMismatch(f"{where}: tokenizer {tokenizer.model_path} has {tokenizer.n_words} pieces but "
                             f"params vocab_size is {args.vocab_size}")


def check_same_vocabulary(a: Tokenizer, b: Tokenizer) -> None:
    """Raise TokenizerMismatch unless both tokenizers have the same pieces at the same ids."""
    if a.n_words != b.n_words:
        raise TokenizerMismatch(f"{a.model_path} has {a.n_words} pieces, {b.model_path} has {b.n_words}")
    for idx, (pa, pb) in enumerate(zip(a.pieces(), b.pieces())):
        if pa != pb:
            raise TokenizerMismatch(f"{a.model_path} and {b.model_path} differ at id {idx}: {pa!r} vs {pb!r}")
    for name in ("bos_id", "eos_id"):
        if getattr(a, name) != getattr(b, name):
            raise TokenizerMismatch(f"{a.model_path} and {b.model_path} differ in {name}")
