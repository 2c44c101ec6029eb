"""KV cache for incremental decoding with the Meta-layout MTP Transformer (implements `KVCacheProtocol`).

Block ids are global: trunk blocks, then head 0 (the last of `layers`), then the extra heads, so every head
block — each with its own attention — has its own keys and values. Writing at `start_pos` overwrites whatever
was stored there, and `update` returns only positions [0, start_pos + S): rolling back rejected speculative
tokens is therefore just decoding again from an earlier `start_pos`.
"""

from __future__ import annotations

import torch

from vendor.meta_llama.model import Transformer


class KVCache:
    def __init__(self, n_blocks: int, batch: int, max_len: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        shape = (n_blocks, batch, max_len, n_kv_heads, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len

    @classmethod
    def for_model(cls, model: Transformer, batch: int, max_len: int) -> KVCache:
        weight = model.tok_embeddings.weight
        return cls(model.n_blocks, batch, max_len, model.args.kv_heads, model.args.head_dim, weight.dtype,
                   weight.device)

    def update(self, block_id: int, k: torch.Tensor, v: torch.Tensor, start_pos: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, S, Hkv, Dh) at [start_pos, start_pos+S); return keys/values (B, start_pos+S, Hkv, Dh)."""
        end = start_pos + k.shape[1]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; asked to write up to {end}")
        if k.shape[0] != self.keys.shape[1]:
            raise ValueError(f"KV cache batch is {self.keys.shape[1]}, got keys for {k.shape[0]}")
        self.keys[block_id, :, start_pos:end] = k
        self.values[block_id, :, start_pos:end] = v
        return self.keys[block_id, :, :end], self.values[block_id, :, :end]


def padding_attn_mask(valid: torch.Tensor, start_pos: int, seqlen: int) -> torch.Tensor:
    """(B, 1, S, T) mask for queries at [start_pos, start_pos+S) over keys [0, T): key is real, or the query itself.

    `valid` (B, L) marks real (non-padding) positions. Letting a padding query see itself keeps its softmax
    finite; real queries never see padding. The model intersects this with the causal mask.
    """
    total = start_pos + seqlen
    keys = valid[:, :total]  # (B, T)
    query_pos = torch.arange(start_pos, total, device=valid.device)[:, None]
    itself = torch.arange(total, device=valid.device)[None, :] == query_pos  # (S, T)
    return keys[:, None, None, :] | itself[None, None]
