"""Stage plans: Stage 1 (value-head pretraining, verifiable only) and Stage 2 (weighted MTP training).

Stage 2 is the same code for every experiment; only the WeightingStrategy differs (baseline: ones,
verifiable: critic GAE weights, rho1: excess-loss weights) — see wmtp_core/weighting/strategies.py.
"""

from __future__ import annotations

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
from wmtp_core.weighting.strategies import WeightingStrategy, count_target_tokens, make_strategy

STRATEGY_NAMES = {"baseline": "baseline", "verifiable": "verifiable", "rho1_weighted": "rho1"}


@dataclass
class Models:
    """Everything trained or consulted: the policy, the value head (verifiable) and the reference (rho1)."""

    policy: Transformer
    value_head: ValueHead | None = None
    reference: Transformer | None = None


def trunk_parameters(model: Transformer) -> list[nn.Parameter]:
    """Embeddings + shared trunk blocks (everything below the heads)."""
    return [*model.tok_embeddings.parameters(), *(p for block in model.layers[:-1] for p in block.parameters())]


def build_strategy(cfg: ResolvedConfig, models: Models) -> WeightingStrategy:
    return make_strategy(STRATEGY_NAMES[cfg.experiment], value_head=models.value_head, verifiable=cfg.verifiable,
                         ref_model=models.reference, rho1=cfg.rho1)


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
            normed = model.normed_trunk(model.trunk_forward(batch["input_ids"]))  # (B, S, D)
        loss, metrics, _ = critic_loss(head, normed, batch["response_mask"], batch["is_correct"],
                                       cfg.verifiable.critic, anchor=None, denom=denoms["tokens"])
        loss.backward()
        return {**metrics, "loss": loss.detach()}

    return StagePlan(stage="stage1", total_steps=total_steps, param_groups=groups, modules=modules,
                     sampler=source.sampler, next_batch=source.next_batch,
                     count_fn=lambda b: {"tokens": count_target_tokens(b)}, micro_step=micro_step)


def stage2_plan(cfg: ResolvedConfig, models: Models, strategy: WeightingStrategy, source: BatchSource,
                total_steps: int) -> StagePlan:
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
                                logits_hook=prep.logits_hook)
        out.backward()
        total = out.loss.detach()
        if prep.aux_loss is not None:
            prep.aux_loss.backward()
            total = total + prep.aux_loss.detach()
        return {**prep.collect_metrics(), **out.metrics, "mtp_loss": out.loss.detach(), "loss": total}

    return StagePlan(stage="stage2", total_steps=total_steps, param_groups=groups, modules=modules,
                     sampler=source.sampler, next_batch=source.next_batch,
                     count_fn=lambda b: {"labels": count_valid_labels(b["labels"][..., :n_heads]),
                                         "tokens": count_target_tokens(b)},
                     micro_step=micro_step, extra_state={"strategy": strategy},
                     after_update=strategy.after_optimizer_step)
