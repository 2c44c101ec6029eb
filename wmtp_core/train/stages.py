"""Stage plans: Stage 1 (value-head pretraining, verifiable only) and Stage 2 (weighted MTP training).

Stage 2 is the same code for every experiment; only the WeightingStrategy differs (baseline: ones,
verifiable: critic GAE weights, rho1: excess-loss weights) — see wmtp_core/weighting/strategies.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vendor.meta_llama.model import Transformer
from wmtp_core.config import ResolvedConfig
from wmtp_core.losses import count_valid_labels, weighted_mtp_loss
from wmtp_core.model.finetune import set_trainable
from wmtp_core.model.value_head import ValueHead
from wmtp_core.train.data import BatchSource
from wmtp_core.train.loop import Metrics, StagePlan
from wmtp_core.weighting.critic import critic_loss
from wmtp_core.weighting.position import PROFILE_CAP, profile_sums, weight_summary
from wmtp_core.weighting.strategies import (
    WeightingStrategy,
    count_target_tokens,
    fp32,
    make_strategy,
    target_mask,
)


@dataclass
class Models:
    """Everything trained or consulted: the policy, the value head (verifiable) and the reference (rho1)."""

    policy: Transformer
    value_head: ValueHead | None = None
    reference: Transformer | None = None


def trunk_parameters(model: Transformer) -> list[nn.Parameter]:
    """Embeddings + shared trunk blocks (everything below the heads)."""
    return [*model.tok_embeddings.parameters(), *(p for block in model.layers[:-1] for p in block.parameters())]


def build_strategy(cfg: ResolvedConfig, models: Models, constant_value: float | None = None) -> WeightingStrategy:
    return make_strategy(cfg.experiment, value_head=models.value_head, verifiable=cfg.verifiable,
                         ref_model=models.reference, rho1=cfg.rho1, constant_value=constant_value)


def stage1_mean_value(history: list[dict[str, float]]) -> float | None:
    """The Stage 1 mean value (V of `verifiable.mode: constant_critic`): the mean of Stage 1's per-step
    `value_mean` (mean V over each step's target tokens, correct and incorrect rows) over the last 10% of its
    steps (at least one), i.e. what the fitted critic predicts on average on Stage 1 data. None without history."""
    values = [row["value_mean"] for row in history if "value_mean" in row]
    if not values:
        return None
    tail = values[-max(1, math.ceil(0.1 * len(values))):]
    return sum(tail) / len(tail)


class WeightProfile:
    """Weight sums and counts per distance-to-EOS bucket over every Stage 2 micro-batch (checkpointed)."""

    def __init__(self) -> None:
        self.sums = torch.zeros(PROFILE_CAP + 1, dtype=torch.float64)
        self.counts = torch.zeros(PROFILE_CAP + 1, dtype=torch.float64)

    def add(self, w: torch.Tensor, mask: torch.Tensor) -> None:
        sums, counts = profile_sums(w, mask)
        self.sums += sums
        self.counts += counts

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.counts = state["sums"].double().clone(), state["counts"].double().clone()


def stage1_plan(cfg: ResolvedConfig, models: Models, source: BatchSource, total_steps: int) -> StagePlan:
    """Value head on the final-normed trunk, terminal reward from is_correct (correct AND incorrect rows)."""
    model, head = models.policy, models.value_head
    if head is None:
        raise ValueError("stage1 needs a value head")
    frozen = cfg.stage1.freeze_trunk
    model.requires_grad_(False)
    groups: list[tuple[list[nn.Parameter], float]] = [(list(head.parameters()), cfg.stage1.lr)]
    modules: dict[str, nn.Module] = {"value_head": head}
    if not frozen:
        trunk = set_trainable(model, cfg.model, scope=trunk_parameters(model))  # what model.finetune trains
        groups.append((trunk, cfg.optim.lr))
        modules["model"] = model

    def micro_step(batch: dict[str, Any], denoms: dict[str, torch.Tensor]) -> Metrics:
        with torch.set_grad_enabled(not frozen):
            trunk = model.trunk_forward(batch["input_ids"])  # (B, S, D), in the loop's autocast dtype
        with fp32(trunk):  # the critic computes in fp32 (as in Stage 2)
            with torch.set_grad_enabled(not frozen):
                normed = model.normed_trunk(trunk.float()).float()
            loss, metrics, _ = critic_loss(head, normed, batch["response_mask"], batch["is_correct"],
                                           cfg.verifiable.critic, anchor=None, denom=denoms["tokens"])
        loss.backward()
        return {**metrics, "loss": loss.detach()}

    return StagePlan(stage="stage1", total_steps=total_steps, param_groups=groups, modules=modules,
                     sampler=source.sampler, next_batch=source.next_batch,
                     count_fn=lambda b: {"tokens": count_target_tokens(b)}, micro_step=micro_step)


def stage2_plan(cfg: ResolvedConfig, models: Models, strategy: WeightingStrategy, source: BatchSource,
                total_steps: int, profile: WeightProfile | None = None) -> StagePlan:
    """Weighted MTP on every head with the global valid-label denominator; the strategy supplies the weights."""
    model = models.policy
    groups: list[tuple[list[nn.Parameter], float]] = [(set_trainable(model, cfg.model), cfg.optim.lr)]
    critic_params = [p for m in strategy.trainable_modules() for p in m.parameters()]
    if critic_params:
        groups.append((critic_params, cfg.stage1.lr))
    modules: dict[str, nn.Module] = {"model": model}
    if models.value_head is not None:
        modules["value_head"] = models.value_head
    n_heads = model.n_future

    def micro_step(batch: dict[str, Any], denoms: dict[str, torch.Tensor]) -> Metrics:
        trunk = model.trunk_forward(batch["input_ids"])  # (B, S, D), once
        prep = strategy.prepare(batch, model, trunk, denoms["tokens"])
        out = weighted_mtp_loss(model, trunk, batch["labels"][..., :n_heads], prep.weights, denoms["labels"],
                                cfg.train.head_coefs, impl=cfg.train.loss_impl, chunk_size=cfg.train.chunk_size,
                                logits_hook=prep.logits_hook, head_reduction=cfg.train.head_reduction)
        out.backward()
        total = out.loss.detach()
        if prep.aux_loss is not None:
            prep.aux_loss.backward()
            total = total + prep.aux_loss.detach()
        mask = target_mask(batch)
        if profile is not None:
            profile.add(out.weights, mask)
        # weight_entropy/ess/last10_share over this micro-batch's target tokens, the same for every experiment
        return {**prep.collect_metrics(), **out.metrics, **weight_summary(out.weights, mask),
                "mtp_loss": out.loss.detach(), "loss": total}

    return StagePlan(stage="stage2", total_steps=total_steps, param_groups=groups, modules=modules,
                     sampler=source.sampler, next_batch=source.next_batch,
                     count_fn=lambda b: {"labels": count_valid_labels(b["labels"][..., 0]),  # positions
                                         "tokens": count_target_tokens(b)},
                     micro_step=micro_step,
                     extra_state={"strategy": strategy, **({"weight_profile": profile} if profile else {})},
                     after_update=strategy.after_optimizer_step)
