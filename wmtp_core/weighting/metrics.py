"""Masked statistics and critic-quality metrics (detached 0-dim tensors: no host sync until logged)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def masked_stats(x: Tensor, mask: Tensor, prefix: str) -> dict[str, Tensor]:
    """{prefix}_mean/std/min/max of x over mask (population std); zeros when nothing is valid."""
    x = x.detach().float()
    mask = mask.bool()
    n = mask.sum().clamp_min(1)
    mean = (x * mask).sum() / n
    std = ((((x - mean) * mask) ** 2).sum() / n).sqrt()
    any_valid = mask.any()
    big = torch.finfo(x.dtype).max
    lo = torch.where(mask, x, torch.full_like(x, big)).min()
    hi = torch.where(mask, x, torch.full_like(x, -big)).max()
    zero = torch.zeros((), device=x.device)
    return {f"{prefix}_mean": mean, f"{prefix}_std": std,
            f"{prefix}_min": torch.where(any_valid, lo, zero), f"{prefix}_max": torch.where(any_valid, hi, zero)}


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var(returns - values) / Var(returns) over mask (0 when the returns have no variance)."""
    mask = mask.bool()
    n = mask.sum().clamp_min(1)
    v, r = values.detach().float(), returns.detach().float()

    def var(x: Tensor) -> Tensor:
        mean = (x * mask).sum() / n
        return (((x - mean) * mask) ** 2).sum() / n

    var_r = var(r)
    ev = 1.0 - var(r - v) / var_r.clamp_min(1e-12)
    return torch.where(var_r > 1e-12, ev, torch.zeros_like(ev))


def critic_drift(values: Tensor, anchor_values: Tensor, mask: Tensor,
                 kind: Literal["cosine", "kl"] = "cosine") -> Tensor:
    """Drift of the critic from its anchor over valid tokens.

    cosine: 1 - cos(values, anchor) of the masked value vectors (0 = same direction).
    kl: mean over sequences of KL(softmax(anchor) || softmax(values)) over each sequence's valid tokens,
    i.e. how much the token distribution the critic induces has moved.
    """
    mask = mask.bool()
    v, a = values.detach().float() * mask, anchor_values.detach().float() * mask
    if kind == "cosine":
        cos = (v * a).sum() / (v.norm() * a.norm()).clamp_min(1e-12)
        return 1.0 - cos
    if kind == "kl":
        neg = torch.tensor(float("-inf"), device=v.device)
        log_p = torch.log_softmax(torch.where(mask, a, neg), dim=1)
        log_q = torch.log_softmax(torch.where(mask, v, neg), dim=1)
        per_tok = torch.where(mask, log_p.exp() * (log_p - log_q), torch.zeros_like(v))
        rows = mask.any(dim=1)
        return (per_tok.sum(dim=1) * rows).sum() / rows.sum().clamp_min(1)
    raise ValueError(f"critic drift kind must be 'cosine' or 'kl', got {kind!r}")
