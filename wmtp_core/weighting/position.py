"""How much of a token weighting is position: distance to EOS, the position-matched control, profile and summary.

Distances are counted per row over the valid target tokens of (B, S) ``mask``: the row's last valid token (the
response's EOS) is at distance 0, the one before it at 1, and so on. Distances >= ``cap`` share one bucket
(index ``cap``), so a profile has ``cap + 1`` entries: mean weight at distance 0..cap-1 and ">= cap".

position_matched: the weights are permuted among valid tokens of the (global) micro-batch that share a distance
bucket. The mean weight of every bucket — the weight-by-position profile — is kept exactly; which token of a
given distance gets which weight is random (seeded CPU generator, checkpointable like the other ablations).

Summary metrics of a weighting over valid tokens (N of them, weights w):
  weight_entropy       H(w / sum w) / log N (1 = uniform; 1 when N <= 1)
  weight_ess           (sum w)^2 / (N * sum w^2), effective sample size as a fraction of N (1 = uniform)
  weight_last10_share  sum of w on each row's last 10 valid tokens / sum w
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from wmtp_core.tracking.figures import pyplot, save_png

PROFILE_CAP = 64  # distances 0..63 have their own bucket, >= 64 share one
LAST_K = 10


def distance_to_last(mask: Tensor) -> Tensor:
    """(B, S) long: number of valid tokens after each valid token in its row (0 at the last); -1 outside mask."""
    mask = mask.bool()
    after = mask.sum(dim=1, keepdim=True) - mask.long().cumsum(dim=1)
    return torch.where(mask, after, torch.full_like(after, -1))


def distance_buckets(mask: Tensor, cap: int = PROFILE_CAP) -> Tensor:
    """(B, S) long: min(distance, cap) on valid tokens, -1 outside mask."""
    d = distance_to_last(mask)
    return torch.where(d >= 0, d.clamp_max(cap), d)


def position_matched(w: Tensor, mask: Tensor, generator: torch.Generator, cap: int = PROFILE_CAP) -> Tensor:
    """w (B, S) permuted among valid tokens sharing a distance bucket (seeded); 0 outside mask."""
    mask = mask.bool()
    flat_mask = mask.flatten()
    idx = flat_mask.nonzero().squeeze(1)
    buckets = distance_buckets(mask, cap).flatten()[idx].double()
    keys = torch.rand(idx.numel(), generator=generator, dtype=torch.float64).to(w.device)
    source = torch.argsort(buckets * 2.0 + keys)  # grouped by bucket, random order inside each group
    dest = torch.sort(buckets, stable=True).indices  # grouped by bucket, original order inside each group
    values = w.flatten()[idx]
    permuted = torch.empty_like(values)
    permuted[dest] = values[source]
    return torch.zeros_like(w).flatten().index_copy_(0, idx, permuted).view_as(w)


def profile_sums(w: Tensor, mask: Tensor, cap: int = PROFILE_CAP) -> tuple[Tensor, Tensor]:
    """(cap + 1,) float64 weight sums and token counts per distance bucket (add them up over batches)."""
    mask = mask.bool()
    buckets = distance_buckets(mask, cap)[mask].cpu()
    values = w.detach()[mask].double().cpu()
    sums = torch.zeros(cap + 1, dtype=torch.float64).index_add_(0, buckets, values)
    counts = torch.zeros(cap + 1, dtype=torch.float64).index_add_(0, buckets, torch.ones_like(values))
    return sums, counts


def profile_means(sums: Tensor, counts: Tensor) -> list[float | None]:
    """Mean weight per bucket; None for a bucket without tokens."""
    return [float(s / c) if c > 0 else None for s, c in zip(sums.tolist(), counts.tolist(), strict=True)]


def profile_metrics(sums: Tensor, counts: Tensor, prefix: str = "weight_profile") -> dict[str, float]:
    """{prefix}/d00..d{cap-1} and {prefix}/d{cap}plus mean weights (empty buckets left out), for a logger."""
    cap = sums.numel() - 1
    out = {}
    for d, mean in enumerate(profile_means(sums, counts)):
        if mean is not None:
            out[f"{prefix}/d{d:02d}" if d < cap else f"{prefix}/d{cap}plus"] = mean
    return out


def weight_summary(w: Tensor, mask: Tensor, last_k: int = LAST_K) -> dict[str, Tensor]:
    """weight_entropy, weight_ess, weight_last10_share over the valid tokens of (B, S) (detached 0-dim fp32)."""
    mask = mask.bool()
    x = torch.where(mask, w.detach().float(), torch.zeros((), device=w.device))
    n = mask.sum().float()
    total = x.sum()
    p = x / total.clamp_min(1e-30)
    ent = -torch.where(p > 0, p * p.clamp_min(1e-38).log(), torch.zeros_like(p)).sum()
    entropy = torch.where(n > 1, ent / n.clamp_min(2).log(), torch.ones_like(ent))
    ess = total**2 / (n * (x**2).sum()).clamp_min(1e-30)
    near = (distance_to_last(mask) < last_k) & mask
    share = (x * near).sum() / total.clamp_min(1e-30)
    return {"weight_entropy": entropy, "weight_ess": ess, "weight_last10_share": share}


def profile_png(means: list[float | None], path: Path, title: str) -> Path:
    """Line plot of mean weight against distance to EOS (last bucket = '>= cap'), written atomically."""
    plt = pyplot()
    xs = [d for d, m in enumerate(means) if m is not None]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(xs, [means[d] for d in xs], marker=".", color="#aa3377")
    ax.axhline(1.0, color="#999999", lw=0.8)
    cap = len(means) - 1
    ax.set_xlabel(f"distance to last response token (tokens; {cap} = >= {cap})")
    ax.set_ylabel("mean weight")
    ax.set_title(title)
    fig.tight_layout()
    return save_png(fig, path)
