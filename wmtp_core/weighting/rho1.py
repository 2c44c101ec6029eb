"""Rho-1 selective language modelling: excess loss L_model - L_ref per target token, top-k% or soft weights.

Per-token CE tensors from the loss are indexed by the predicting position t (head 0 at t predicts token t+1);
weights are indexed by target position u = t + 1, so ``to_target_positions`` shifts them right by one. Every
MTP head then uses its own target token's weight through ``losses.target_weights``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

from wmtp_core.weighting.weights import clip_mean_one, masked_softmax


def to_target_positions(per_position: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """(B, S) values at predicting positions t -> values at target positions u = t + 1, with their mask."""
    out = torch.zeros_like(per_position)
    mask = torch.zeros_like(valid, dtype=torch.bool)
    out[:, 1:] = per_position[:, :-1]
    mask[:, 1:] = valid[:, :-1]
    return out, mask


def excess_loss(model_ce: Tensor, ref_ce: Tensor) -> Tensor:
    """L_model - L_ref, detached (weights never carry gradient)."""
    return (model_ce.detach().float() - ref_ce.detach().float())


def selection_count(ratio: float, n_valid: Tensor) -> Tensor:
    """ceil(ratio * N) computed exactly (ratio read as its shortest decimal, e.g. 0.6 = 3/5), as a tensor."""
    frac = Fraction(str(ratio))
    num, den = frac.numerator, frac.denominator
    return torch.div(n_valid * num + den - 1, den, rounding_mode="floor")


def topk_select(excess: Tensor, mask: Tensor, ratio: float) -> Tensor:
    """Bool (B, S): exactly ceil(ratio * N) of the N valid tokens of the whole batch with the largest excess.

    Ties are broken by flat position (earlier first) via a stable sort; no host sync.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"Rho-1 selection ratio must be in (0, 1], got {ratio}")
    mask = mask.bool()
    flat = torch.where(mask, excess.float(), torch.full_like(excess, float("-inf"), dtype=torch.float32))
    order = torch.sort(flat.flatten(), descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    k = selection_count(ratio, mask.sum())
    return (rank.view_as(mask) < k) & mask


def topk_weights(excess: Tensor, mask: Tensor, ratio: float) -> tuple[Tensor, Tensor]:
    """(weights, selected): weight N / k on the k selected tokens, 0 elsewhere (mean 1 over the N valid).

    With the loss normaliser D = N this is exactly the mean CE over the selected tokens (Rho-1's loss).
    """
    selected = topk_select(excess, mask, ratio)
    n = mask.bool().sum().float()
    k = selected.sum().float().clamp_min(1)
    return selected.float() * (n / k), selected


def soft_weights(excess: Tensor, mask: Tensor, temperature: float = 1.0, weight_min: float = 0.0,
                 weight_max: float = float("inf")) -> Tensor:
    """N * softmax(excess / temperature) over the batch's valid tokens (mean 1), optionally clipped."""
    if temperature <= 0:
        raise ValueError(f"Rho-1 soft temperature must be > 0, got {temperature}")
    mask = mask.bool()
    flat_m = mask.reshape(1, -1)
    p = masked_softmax(excess.float().reshape(1, -1) / temperature, flat_m)
    w = p * flat_m.sum().float()
    if weight_min > 0.0 or math.isfinite(weight_max):
        w = clip_mean_one(w, flat_m, weight_min, weight_max)
    return w.view_as(mask).float()


def next_token_kl(model_logits: Tensor, ref_logits: Tensor) -> Tensor:
    """Per-row KL(model || ref) (n,) from fp32 logits (n, V) of the model's next-token head and the reference."""
    log_p = torch.log_softmax(model_logits.float(), dim=-1)
    log_q = torch.log_softmax(ref_logits.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)
