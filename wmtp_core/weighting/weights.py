"""Advantages -> token weights with mean exactly 1 over valid tokens (the effective learning rate is unchanged).

Pipeline per normalisation scope (the whole batch, or each sequence):
  z-score over valid tokens (std guarded) -> clip to [-z_clip, z_clip] -> p = softmax(z / temperature)
  -> entropy floor (mix p with uniform until H(p) / log N >= floor) -> w = N * p (mean 1)
  -> clip to [weight_min, weight_max] by solving for the scale s with mean(clamp(s * w)) = 1.
Train and validation call the same function. Everything is tensor ops with fixed iteration counts (no host sync).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from wmtp_core.weighting.metrics import masked_stats

_BISECT_STEPS = 40


class WeightConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, gt=0.0)
    z_clip: float = Field(3.0, gt=0.0)
    entropy_floor: float = Field(0.5, ge=0.0, le=1.0)  # on the normalised entropy H(p) / log N
    weight_min: float = Field(0.1, ge=0.0)
    weight_max: float = Field(5.0, gt=0.0)
    normalize: Literal["sequence", "batch"] = "sequence"  # per solution (the design) or the global micro-batch
    std_eps: float = Field(1e-6, gt=0.0)

    @model_validator(mode="after")
    def _bounds_admit_mean_one(self) -> WeightConfig:
        if not self.weight_min <= 1.0 <= self.weight_max:
            raise ValueError(f"weight bounds [{self.weight_min}, {self.weight_max}] must contain 1 "
                             "(the mean weight is normalised to 1)")
        return self


def _scopes(x: Tensor, mask: Tensor, scope: str) -> tuple[Tensor, Tensor]:
    """View x/mask as (G, L) groups: one row for the batch, or one per sequence."""
    if scope == "batch":
        return x.reshape(1, -1), mask.reshape(1, -1)
    return x, mask


def masked_zscore(x: Tensor, mask: Tensor, eps: float) -> Tensor:
    """Row-wise z-score over valid entries of (G, L); rows with std < eps give 0 (uniform weights)."""
    n = mask.sum(dim=1, keepdim=True).clamp_min(1)
    mean = (x * mask).sum(dim=1, keepdim=True) / n
    var = (((x - mean) * mask) ** 2).sum(dim=1, keepdim=True) / n
    std = var.sqrt()
    z = (x - mean) / std.clamp_min(eps)
    return torch.where(mask & (std >= eps), z, torch.zeros_like(z))


def masked_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """Row-wise softmax over valid entries of (G, L); 0 elsewhere and on empty rows."""
    filled = logits.masked_fill(~mask, float("-inf"))
    p = torch.softmax(filled, dim=1)
    return torch.nan_to_num(p, nan=0.0) * mask


def normalized_entropy(p: Tensor, mask: Tensor) -> Tensor:
    """H(p) / log N per row (G,); 1 for rows with N <= 1."""
    n = mask.sum(dim=1).to(p.dtype)
    ent = -(torch.where(p > 0, p * p.clamp_min(1e-38).log(), torch.zeros_like(p))).sum(dim=1)
    return torch.where(n > 1, ent / n.clamp_min(2).log(), torch.ones_like(ent))


def apply_entropy_floor(p: Tensor, mask: Tensor, floor: float) -> Tensor:
    """Smallest mix alpha in [0, 1] of p with uniform so that H / log N >= floor (entropy rises with alpha)."""
    n = mask.sum(dim=1, keepdim=True).clamp_min(1).to(p.dtype)
    uniform = mask / n
    ok = normalized_entropy(p, mask) >= floor  # rows already above the floor keep alpha = 0
    lo = torch.zeros(p.shape[0], 1, dtype=p.dtype, device=p.device)
    hi = torch.ones_like(lo)
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2
        good = normalized_entropy((1 - mid) * p + mid * uniform, mask)[:, None] >= floor
        hi = torch.where(good, mid, hi)
        lo = torch.where(good, lo, mid)
    alpha = torch.where(ok[:, None], torch.zeros_like(hi), hi)
    return (1 - alpha) * p + alpha * uniform


def clip_mean_one(w: Tensor, mask: Tensor, lo: float, hi: float) -> Tensor:
    """clamp(s * w, lo, hi) with the row scale s solved so the mean over valid entries is 1 (lo <= 1 <= hi).

    mean(clamp(s * w)) is non-decreasing in s, so s is found by bisection on log s; a final exact correction
    rescales the unclipped entries so the mean is 1 to rounding, then bounds are re-applied.
    """
    n = mask.sum(dim=1, keepdim=True).clamp_min(1).to(w.dtype)

    def mean_at(log_s: Tensor) -> Tensor:
        return (torch.clamp(w * log_s.exp(), lo, hi) * mask).sum(dim=1, keepdim=True) / n

    pos_min = torch.where(mask & (w > 0), w, torch.full_like(w, float("inf"))).amin(dim=1, keepdim=True)
    pos_max = (w * mask).amax(dim=1, keepdim=True).clamp_min(1e-30)
    a = (lo / pos_max).clamp_min(1e-30).log() - 1.0  # every entry clamps to lo: mean <= 1
    b = (hi / pos_min.clamp(1e-30, 1e30)).log() + 1.0  # every positive entry clamps to hi: mean >= 1
    for _ in range(_BISECT_STEPS + 20):
        mid = (a + b) / 2
        under = mean_at(mid) < 1.0
        a = torch.where(under, mid, a)
        b = torch.where(under, b, mid)
    out = torch.clamp(w * ((a + b) / 2).exp(), lo, hi) * mask
    free = mask & (out > lo) & (out < hi)
    free_sum = (out * free).sum(dim=1, keepdim=True)
    need = n - (out * (mask & ~free)).sum(dim=1, keepdim=True)
    factor = torch.where(free_sum > 0, need / free_sum.clamp_min(1e-30), torch.ones_like(need))
    out = torch.where(free, out * factor, out)
    return torch.clamp(out, lo, hi) * mask


def build_weights(advantages: Tensor, mask: Tensor, cfg: WeightConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """advantages, mask (B, S) -> weights (B, S) fp32 (0 outside mask, mean 1 per scope) and detached stats."""
    mask = mask.bool()
    adv = advantages.detach().float()
    x, m = _scopes(adv, mask, cfg.normalize)
    z = masked_zscore(x, m, cfg.std_eps).clamp(-cfg.z_clip, cfg.z_clip)
    p = apply_entropy_floor(masked_softmax(z / cfg.temperature, m), m, cfg.entropy_floor)
    raw = p * m.sum(dim=1, keepdim=True).to(p.dtype)
    w = clip_mean_one(raw, m, cfg.weight_min, cfg.weight_max)
    stats = {**weight_stats(w, m, cfg.weight_min, cfg.weight_max), **masked_stats(adv, mask, "adv")}
    return w.view_as(adv), stats


def weight_stats(w: Tensor, mask: Tensor, lo: float, hi: float) -> dict[str, Tensor]:
    """Weight mean/std/min/max, normalised entropy of w / N and the fraction sitting at either bound."""
    stats = masked_stats(w, mask, "weight")
    p = w / mask.sum(dim=1, keepdim=True).clamp_min(1)
    stats["weight_entropy"] = normalized_entropy(p, mask).mean()
    clipped = mask & ((w <= lo + 1e-6) | (w >= hi - 1e-6))
    stats["weight_frac_clipped"] = clipped.sum() / mask.sum().clamp_min(1)
    return {k: v.detach() for k, v in stats.items()}
