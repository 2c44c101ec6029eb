"""Choose Meta FFN parameters (multiple_of, ffn_dim_multiplier) that reproduce a given SwiGLU hidden size."""

from __future__ import annotations

from dataclasses import replace

from vendor.meta_llama.model import ModelArgs


def with_ffn_hidden(args: ModelArgs, hidden: int) -> ModelArgs:
    """`args` with multiple_of / ffn_dim_multiplier set so that `ffn_hidden_dim == hidden`.

    Keeps Meta's plain rule (multiple_of 256, no multiplier) when it already gives `hidden`
    (dim 4096 -> 11008, dim 2560 -> 6912); otherwise uses multiple_of = hidden and a multiplier.
    """
    if hidden <= 0:
        raise ValueError(f"FFN hidden size must be positive, got {hidden}")
    if args.ffn_hidden_dim == hidden:
        return args
    base = int(2 * (4 * args.dim) / 3)
    candidates = [replace(args, multiple_of=256, ffn_dim_multiplier=None)]
    for multiple in (256, 128, 64, 32, 16, 8, hidden):
        if hidden % multiple == 0:
            candidates.append(replace(args, multiple_of=multiple, ffn_dim_multiplier=hidden / base))
    for cand in candidates:
        if cand.ffn_hidden_dim == hidden:
            return cand
    raise ValueError(f"cannot express FFN hidden size {hidden} for dim {args.dim} with Meta's rule")
