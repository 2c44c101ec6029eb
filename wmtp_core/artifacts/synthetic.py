"""Synthetic Meta-format checkpoints (consolidated.pth, params.json, tokenizer.model) with random weights.

Used by tests and by local runs when the real 7B_1T_4 is absent. A `SYNTHETIC.json` marker sits next to the
checkpoint; the converter sees it and records `synthetic: true` in everything derived from it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from vendor.meta_llama.model import ROPE_FREQS_KEY, ModelArgs, expected_shapes
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core.artifacts.layout import SYNTHETIC_MARKER
from wmtp_core.io import atomic_output, atomic_write_json

CHECKPOINT_NAME = "consolidated.pth"
PARAMS_NAME = "params.json"
TOKENIZER_NAME = "tokenizer.model"


def tiny_args(vocab_size: int, **overrides: Any) -> ModelArgs:
    """Test-sized MTP dims, GQA (4 query / 2 kv heads), head_dim 16.

    n_layers 6 with n_future 4: 2 shared trunk blocks + 4 head blocks (Meta's `layers` list holds the
    2 trunk blocks and head 0, i.e. 3 entries; `extra_heads` holds heads 1..3).
    """
    base = ModelArgs(dim=64, n_layers=6, n_heads=4, n_kv_heads=2, vocab_size=vocab_size, multiple_of=16,
                     n_future_tokens=4, max_seq_len=512)
    return replace(base, **overrides)


def meta_params(args: ModelArgs) -> dict[str, Any]:
    """params.json content in Meta's style: only fields that are set."""
    params = {k: v for k, v in args.to_params().items() if v is not None}
    return params


def synthetic_state_dict(args: ModelArgs, seed: int = 0, dtype: torch.dtype = torch.bfloat16,
                         include_rope_freqs: bool = True) -> dict[str, torch.Tensor]:
    """Random Meta-layout tensors; norms are 1 + noise so swapped norms would show up in parity tests."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in expected_shapes(args).items():
        if key.endswith("norm.weight"):
            tensor = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            tensor = torch.randn(shape, generator=gen) * (0.5 / shape[-1] ** 0.5 if len(shape) == 2 else 1.0)
        state[key] = tensor.to(dtype)
    if include_rope_freqs:
        half = torch.arange(0, args.head_dim, 2, dtype=torch.float32) / args.head_dim
        state[ROPE_FREQS_KEY] = (1.0 / args.rope_theta**half).to(dtype)
    return state


def write_synthetic_meta_checkpoint(out_dir: str | Path, args: ModelArgs, tokenizer_model: str | Path,
                                    seed: int = 0, dtype: torch.dtype = torch.bfloat16,
                                    include_rope_freqs: bool = True,
                                    extra_params: dict[str, Any] | None = None) -> Path:
    """Write consolidated.pth, params.json, tokenizer.model and SYNTHETIC.json into out_dir; return out_dir."""
    out = Path(out_dir)
    tokenizer = Tokenizer(tokenizer_model)
    if tokenizer.n_words != args.vocab_size:
        raise ValueError(f"{tokenizer_model}: tokenizer has {tokenizer.n_words} pieces but args.vocab_size is "
                         f"{args.vocab_size}")
    out.mkdir(parents=True, exist_ok=True)
    state = synthetic_state_dict(args, seed, dtype, include_rope_freqs)
    with atomic_output(out / CHECKPOINT_NAME) as tmp:
        torch.save(state, tmp)
    del state
    atomic_write_json(out / PARAMS_NAME, {**meta_params(args), **(extra_params or {})})
    with atomic_output(out / TOKENIZER_NAME) as tmp:
        shutil.copyfile(tokenizer_model, tmp)
    marker = {"synthetic": True, "generator": "wmtp_core.artifacts.synthetic", "seed": seed,
              "dtype": str(dtype).removeprefix("torch."), "include_rope_freqs": include_rope_freqs}
    atomic_write_json(out / SYNTHETIC_MARKER, marker)
    return out


def is_synthetic_source(source_dir: Path) -> bool:
    marker = source_dir / SYNTHETIC_MARKER
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text(encoding="utf-8")).get("synthetic", False))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{marker}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
