"""Tokenize processed rows and batch them for MTP training (response-only labels for every head).

`encode_example`: BOS + prompt ids, then the code ids and the EOS id. The response's trailing "</s>" is
removed as text and replaced by the tokenizer's EOS id; it is never tokenized as characters. The prompt and
the code are encoded separately, so the prompt/response boundary is the same as at generation time.

`MTPCollator`: labels[b, t, k] = input_ids[b, t+k+1] when t+k+1 < len_b and that token is a response token,
else -100 (head k at position t predicts the token k+1 steps ahead; prompt tokens and padding never appear).
"""

from __future__ import annotations

from typing import Any

import torch

from wmtp_core.data.schema import EOS_TEXT
from wmtp_core.data.sp import TokenizerLike

IGNORE = -100


def encode_example(tokenizer: TokenizerLike, row: dict, max_len: int) -> dict[str, Any]:
    """Token ids of one processed row, cut to `max_len` (the prompt must leave room for a response token)."""
    response: str = row["response"]
    if not response.endswith(EOS_TEXT):
        raise ValueError(f"response of {row['metadata']['task_id']}: does not end with {EOS_TEXT!r}")
    prompt_ids = tokenizer.encode(row["prompt"], bos=True)
    response_ids = tokenizer.encode(response[: -len(EOS_TEXT)]) + [tokenizer.eos_id]
    if len(prompt_ids) >= max_len:
        raise ValueError(
            f"{row['metadata']['task_id']}: prompt has {len(prompt_ids)} tokens >= max_len={max_len}"
        )
    meta = row["metadata"]
    return {
        "input_ids": (prompt_ids + response_ids)[:max_len],
        "response_start": len(prompt_ids),
        "is_correct": bool(meta["is_correct"]),
        "task_id": meta["task_id"],
        "source": meta["source"],
    }


class MTPCollator:
    def __init__(self, pad_id: int, n_future: int) -> None:
        if n_future < 1:
            raise ValueError(f"n_future: expected >= 1, got {n_future}")
        self.pad_id = pad_id
        self.n_future = n_future

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])  # (B,)
        seq = int(lengths.max())
        ids = torch.full((len(examples), seq), self.pad_id, dtype=torch.long)  # (B, S)
        for b, e in enumerate(examples):
            ids[b, : len(e["input_ids"])] = torch.tensor(e["input_ids"], dtype=torch.long)
        pos = torch.arange(seq)  # (S,)
        attention = pos[None, :] < lengths[:, None]  # (B, S)
        starts = torch.tensor([e["response_start"] for e in examples])
        response = attention & (pos[None, :] >= starts[:, None])  # (B, S)
        return {
            "input_ids": ids,
            "attention_mask": attention,
            "response_mask": response,
            "labels": self._labels(ids, response),
            "is_correct": torch.tensor([float(e["is_correct"]) for e in examples]),
            "task_id": [e["task_id"] for e in examples],
            "source": [e["source"] for e in examples],
        }

    def _labels(self, ids: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        bsz, seq = ids.shape
        labels = torch.full((bsz, seq, self.n_future), IGNORE, dtype=torch.long)  # (B, S, F)
        for k in range(self.n_future):
            shift = k + 1
            if shift >= seq:
                break
            target = ids[:, shift:]  # token t+k+1 for t in [0, S-shift)
            labels[:, : seq - shift, k] = torch.where(response[:, shift:], target, IGNORE)
        return labels
