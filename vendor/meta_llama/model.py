"""A training-capable multi-token-prediction Transformer in Meta's 7B_1T_4 state-dict layout.

Written for this project (not a copy of Meta's inference-only reference). The module tree mirrors
Meta's `consolidated.pth` keys exactly, so a converted checkpoint loads with `load_state_dict`:

    tok_embeddings.weight
    layers.{i}.attention.{wq,wk,wv,wo}.weight          i in [0, n_layers - n_future]   (last = head 0)
    layers.{i}.feed_forward.{w1,w2,w3}.weight
    layers.{i}.{attention_norm,ffn_norm}.weight
    extra_heads.{j}.<same block keys>                   j in [0, n_future - 2]          (heads 1..n_future-1)
    norm.weight, output.weight                          shared by every head, output not tied

Shapes: B batch, S sequence, D dim, H heads, Hkv kv-heads, Dh head dim, V vocab, F n_future.
Head k (0-based) at position t predicts token t + k + 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

ROPE_FREQS_KEY = "rope.freqs"  # present in some Meta checkpoints; frequencies are recomputed here


@dataclass
class ModelArgs:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None
    vocab_size: int = 32000
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    n_future_tokens: int = 1
    max_seq_len: int = 2048

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.kv_heads}")
        if self.n_future_tokens < 1:
            raise ValueError(f"n_future_tokens must be >= 1, got {self.n_future_tokens}")
        if self.n_layers - self.n_future_tokens < 0:
            raise ValueError(f"n_layers={self.n_layers} is smaller than n_future_tokens={self.n_future_tokens}")
        if self.vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {self.vocab_size}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> tuple[ModelArgs, dict[str, Any]]:
        """Build from a Meta `params.json` dict; returns (args, ignored_extra_fields)."""
        known = {f.name for f in fields(cls)}
        extra = {k: v for k, v in params.items() if k not in known}
        return cls(**{k: v for k, v in params.items() if k in known}), extra

    @classmethod
    def from_json(cls, path: str | Path) -> ModelArgs:
        path = Path(path)
        try:
            params = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        return cls.from_params(params)[0]

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def n_trunk_layers(self) -> int:
        """Blocks shared by all heads (Meta's `layers` minus its last block)."""
        return self.n_layers - self.n_future_tokens

    @property
    def ffn_hidden_dim(self) -> int:
        """SwiGLU hidden size as Meta computes it (dim 4096, multiple_of 256 -> 11008)."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)


class KVCacheProtocol(Protocol):
    def update(self, block_id: int, k: torch.Tensor, v: torch.Tensor, start_pos: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, S, Hkv, Dh) at [start_pos, start_pos+S); return all keys/values so far."""


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_tables(head_dim: int, start: int, length: int, theta: float, device: torch.device,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (length, Dh/2) in fp32 for positions [start, start+length), or (B, S, Dh/2) for explicit
    per-row `positions` (B, S) (speculative decoding, where rows of a batch sit at different positions)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    if positions is None:
        positions = torch.arange(start, start + length, device=device)
    angles = positions.float()[..., None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent feature pairs (2i, 2i+1) of x (B, S, H, Dh) — Meta's interleaved convention."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, S, H, Dh/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    c, s = (cos[None, :, None, :], sin[None, :, None, :]) if cos.dim() == 2 else (cos[:, :, None], sin[:, :, None])
    rotated = torch.stack((even * c - odd * s, even * s + odd * c), dim=-1)
    return rotated.flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, block_id: int) -> None:
        super().__init__()
        self.block_id = block_id
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int = 0,
                cache: KVCacheProtocol | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        q = self.wq(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        k = self.wk(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.block_id, k, v, start_pos)  # (B, T, Hkv, Dh), T = start_pos + S
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, len, Dh)
        groups = self.n_heads // self.n_kv_heads
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = _attend(q, k, v, start_pos, attn_mask)  # (B, H, S, Dh)
        return self.wo(out.transpose(1, 2).reshape(bsz, seqlen, -1))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start_pos: int,
            attn_mask: torch.Tensor | None) -> torch.Tensor:
    """Causal SDPA; queries sit at positions [start_pos, start_pos+S) over keys [0, T)."""
    seqlen, total = q.shape[2], k.shape[2]
    if attn_mask is None and start_pos == 0 and seqlen == total:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    q_pos = torch.arange(start_pos, start_pos + seqlen, device=q.device)[:, None]
    causal = torch.arange(total, device=q.device)[None, :] <= q_pos  # (S, T)
    mask = causal if attn_mask is None else attn_mask & causal
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, block_id: int) -> None:
        super().__init__()
        self.attention = Attention(args, block_id)
        self.feed_forward = FeedForward(args.dim, args.ffn_hidden_dim)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int = 0,
                cache: KVCacheProtocol | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, start_pos, cache, attn_mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """MTP Transformer: shared trunk, n_future head blocks, shared final norm and output projection."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.n_future = args.n_future_tokens
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        n_trunk = args.n_trunk_layers
        self.layers = nn.ModuleList(TransformerBlock(args, i) for i in range(n_trunk + 1))
        self.extra_heads = nn.ModuleList(
            TransformerBlock(args, n_trunk + 1 + j) for j in range(args.n_future_tokens - 1)
        )
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.checkpoint_trunk = False  # activation checkpointing for trunk blocks while training

    @property
    def n_blocks(self) -> int:
        return len(self.layers) + len(self.extra_heads)

    def head_block(self, k: int) -> TransformerBlock:
        if not 0 <= k < self.n_future:
            raise IndexError(f"head index {k} outside [0, {self.n_future})")
        return self.layers[-1] if k == 0 else self.extra_heads[k - 1]

    def _rope(self, start_pos: int, seqlen: int, device: torch.device, positions: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_tables(self.args.head_dim, start_pos, seqlen, self.args.rope_theta, device, positions)

    def rope_for(self, start_pos: int, seqlen: int, device: torch.device, positions: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables for `trunk_forward`/`head_hidden` over the same positions (computed once, passed to both)."""
        return self._rope(start_pos, seqlen, device, positions)

    def trunk_forward(self, tokens: torch.Tensor, start_pos: int = 0, cache: KVCacheProtocol | None = None,
                      attn_mask: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                      rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """tokens (B, S) -> pre-norm trunk output (B, S, D), shared input of every head block. `start_pos` is the
        cache slot of the first token; `positions` (B, S), when given, are the RoPE positions (default: slots);
        `rope`, when given, the cos/sin tables of those positions already computed (`rope_for`)."""
        h = self.tok_embeddings(tokens)
        cos, sin = rope or self._rope(start_pos, tokens.shape[1], tokens.device, positions)
        for block in self.layers[:-1]:
            if self.checkpoint_trunk and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, cos, sin, start_pos, cache, attn_mask, use_reentrant=False)
            else:
                h = block(h, cos, sin, start_pos, cache, attn_mask)
        return h

    def head_hidden(self, trunk: torch.Tensor, k: int, start_pos: int = 0,
                    cache: KVCacheProtocol | None = None, attn_mask: torch.Tensor | None = None,
                    positions: torch.Tensor | None = None, rope: tuple[torch.Tensor, torch.Tensor] | None = None
                    ) -> torch.Tensor:
        """Pre-norm output (B, S, D) of head k (0 = next token) applied to the trunk output."""
        cos, sin = rope or self._rope(start_pos, trunk.shape[1], trunk.device, positions)
        return self.head_block(k)(trunk, cos, sin, start_pos, cache, attn_mask)

    def normed_trunk(self, trunk: torch.Tensor) -> torch.Tensor:
        """Final norm applied to the trunk output: what the value head reads."""
        return self.norm(trunk)

    def head_logits(self, trunk: torch.Tensor, k: int, start_pos: int = 0,
                    cache: KVCacheProtocol | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.output(self.norm(self.head_hidden(trunk, k, start_pos, cache, attn_mask)))

    def forward(self, tokens: torch.Tensor, start_pos: int = 0, cache: KVCacheProtocol | None = None,
                attn_mask: torch.Tensor | None = None, n_heads: int | None = None) -> torch.Tensor:
        """tokens (B, S) -> logits (B, S, n_heads or n_future, V)."""
        trunk = self.trunk_forward(tokens, start_pos, cache, attn_mask)
        heads = range(self.n_future if n_heads is None else n_heads)
        return torch.stack([self.head_logits(trunk, k, start_pos, cache, attn_mask) for k in heads], dim=2)


def load_meta_state_dict(model: Transformer, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Load a Meta-layout state dict strictly; returns the tolerated extra keys (e.g. `rope.freqs`)."""
    tolerated = [k for k in state_dict if k == ROPE_FREQS_KEY]
    clean = {k: v for k, v in state_dict.items() if k not in tolerated}
    model.load_state_dict(clean, strict=True)
    return tolerated


def expected_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    """Every key of a Meta-layout checkpoint for `args` with its tensor shape."""
    d, hd, ff = args.dim, args.head_dim, args.ffn_hidden_dim
    block = {
        "attention.wq.weight": (args.n_heads * hd, d),
        "attention.wk.weight": (args.kv_heads * hd, d),
        "attention.wv.weight": (args.kv_heads * hd, d),
        "attention.wo.weight": (d, args.n_heads * hd),
        "feed_forward.w1.weight": (ff, d),
        "feed_forward.w2.weight": (d, ff),
        "feed_forward.w3.weight": (ff, d),
        "attention_norm.weight": (d,),
        "ffn_norm.weight": (d,),
    }
    shapes: dict[str, tuple[int, ...]] = {"tok_embeddings.weight": (args.vocab_size, d)}
    for i in range(args.n_trunk_layers + 1):
        shapes.update({f"layers.{i}.{k}": s for k, s in block.items()})
    for j in range(args.n_future_tokens - 1):
        shapes.update({f"extra_heads.{j}.{k}": s for k, s in block.items()})
    shapes["norm.weight"] = (d,)
    shapes["output.weight"] = (args.vocab_size, d)
    return shapes
