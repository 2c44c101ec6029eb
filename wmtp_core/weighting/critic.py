"""Critic learning: PPO-style clipped value loss, EMA anchor with drift penalty, and the Stage 1 step loss.

Values are aligned to target positions (see gae.py): V(s_u) = value_head(normed_trunk)[:, u - 1], trained on
every response token u of both correct and incorrect rows towards the Monte-Carlo return gamma^(T-u) * R.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from wmtp_core.model.value_head import ValueHead
from wmtp_core.weighting.gae import state_values, terminal_rewards, value_targets
from wmtp_core.weighting.metrics import critic_drift, explained_variance, masked_stats


class CriticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gamma: float = Field(0.99, gt=0.0, le=1.0)
    lam: float = Field(0.95, ge=0.0, le=1.0)
    reward_correct: float = 1.0
    reward_incorrect: float = 0.0
    value_clip: float | None = Field(0.2, gt=0.0)  # None: plain squared error
    drift_coef: float = Field(0.0, ge=0.0)  # weight of the squared-distance penalty to the EMA anchor
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0)
    drift_metric: Literal["cosine", "kl"] = "cosine"


def value_loss(values: Tensor, old_values: Tensor | None, returns: Tensor, mask: Tensor,
               clip: float | None = 0.2, denom: Tensor | float | None = None) -> Tensor:
    """0.5 * max((V - R)^2, (V_clip - R)^2) summed over mask / denom (default: local count).

    V_clip = old + clamp(V - old, -clip, clip); old_values are detached reference values (the EMA anchor's, or
    the same head before the update). old_values None or clip None gives the plain squared error.
    """
    mask = mask.bool()
    err = (values - returns) ** 2
    if old_values is not None and clip is not None:
        old = old_values.detach()
        clipped = old + torch.clamp(values - old, -clip, clip)
        err = torch.maximum(err, (clipped - returns) ** 2)
    total = 0.5 * (err * mask).sum()
    return total / (mask.sum().clamp_min(1) if denom is None else denom)


class EmaAnchor:
    """An exponential moving average copy of a value head: the anchor for clipping and the drift penalty."""

    def __init__(self, head: ValueHead, decay: float = 0.99) -> None:
        self.decay = decay
        self.head = copy.deepcopy(head).requires_grad_(False).eval()
        self.updates = 0

    @torch.no_grad()
    def update(self, head: ValueHead) -> None:
        """anchor <- decay * anchor + (1 - decay) * head (call after each optimizer step)."""
        for a, p in zip(self.head.parameters(), head.parameters(), strict=True):
            a.lerp_(p.detach().to(a.dtype), 1.0 - self.decay)
        self.updates += 1

    @torch.no_grad()
    def values(self, normed_hidden: Tensor) -> Tensor:
        return self.head(normed_hidden)

    def to(self, device: torch.device | str) -> EmaAnchor:
        self.head.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "head": {k: v.detach().clone() for k, v in self.head.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.head.load_state_dict(state["head"], strict=True)


def critic_loss(head: ValueHead, normed_hidden: Tensor, response_mask: Tensor, is_correct: Tensor,
                cfg: CriticConfig, anchor: EmaAnchor | None = None, denom: Tensor | float | None = None
                ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """Value loss (+ drift penalty) of one batch; returns (loss, metrics, V(s_u) (B, S) with grad).

    normed_hidden (B, S, D) = model.normed_trunk(trunk) (detach it to keep the trunk frozen). denom: global
    count of response tokens across accumulation/ranks (default: this batch's count).
    """
    mask = response_mask.bool().clone()
    mask[:, 0] = False  # position 0 (BOS) is never a target
    values = state_values(head(normed_hidden))  # (B, S)
    rewards = terminal_rewards(is_correct, mask, cfg.reward_correct, cfg.reward_incorrect)
    returns = value_targets(rewards, mask, cfg.gamma)
    anchor_values = state_values(anchor.values(normed_hidden)) if anchor is not None else None
    loss = value_loss(values, anchor_values, returns, mask, cfg.value_clip, denom)
    metrics = {"value_loss": loss.detach(), "explained_variance": explained_variance(values, returns, mask),
               **masked_stats(values, mask, "value")}
    if anchor_values is not None:
        drift = (((values - anchor_values) ** 2) * mask).sum()
        drift = drift / (mask.sum().clamp_min(1) if denom is None else denom)
        if cfg.drift_coef > 0:
            loss = loss + cfg.drift_coef * drift
        metrics["drift_penalty"] = drift.detach()
        metrics["critic_drift"] = critic_drift(values, anchor_values, mask, cfg.drift_metric)
    return loss, metrics, values
