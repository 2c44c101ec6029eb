"""The stages as objects: ValueHeadStage (Stage 1, value-head pretraining, verifiable only) and WeightedMTPStage
(Stage 2, weighted MTP training). Each reads top-down: the constructor names what is trained, `counts(batch)` the
normalisers, `micro_step(batch, denoms)` weighting -> loss -> backward (the loop in loop.py does the rest).

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
from wmtp_core.experiments import spec
from wmtp_core.losses import count_valid_labels, weighted_mtp_loss
from wmtp_core.model.finetune import set_trainable
from wmtp_core.model.value_head import ValueHead
from wmtp_core.train.data import BatchSource
from wmtp_core.train.errors import RunSetupError
from wmtp_core.train.loop import Metrics, StagePlan
from wmtp_core.weighting.critic import critic_loss
from wmtp_core.weighting.position import PROFILE_CAP, profile_sums, weight_summary
from wmtp_core.weighting.strategies import (
    WeightingStrategy,
    count_target_tokens,
    fp32,
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
    """Stage 2's weighting strategy, built by the experiment's registry entry (`Spec.strategy`). A RunSetupError
    when `verifiable.mode: constant_critic` has no Stage 1 mean value (no Stage 1 history in this run)."""
    experiment = spec(cfg.experiment)
    if experiment.needs_stage1 and cfg.verifiable.mode == "constant_critic" and constant_value is None:
        raise RunSetupError("verifiable.mode: constant_critic needs the Stage 1 mean value, but this run has no "
                            "Stage 1 history: train Stage 1 first (stages: stage1,stage2) or choose another "
                            "verifiable.mode")
    return experiment.strategy(value_head=models.value_head, verifiable=cfg.verifiable,
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


class ValueHeadStage(StagePlan):
    """Stage 1: the value head on the final-normed trunk, terminal reward from is_correct (correct AND incorrect
    rows); the trunk co-trains unless stage1.freeze_trunk."""

    def __init__(self, cfg: ResolvedConfig, models: Models, source: BatchSource, total_steps: int):
        model, head = models.policy, models.value_head
        if head is None:
            raise ValueError("stage1 needs a value head")
        self.cfg, self.model, self.head, self.frozen = cfg, model, head, cfg.stage1.freeze_trunk
        model.requires_grad_(False)
        groups: list[tuple[list[nn.Parameter], float]] = [(list(head.parameters()), cfg.stage1.lr)]
        modules: dict[str, nn.Module] = {"value_head": head}
        if not self.frozen:
            trunk = set_trainable(model, cfg.model, scope=trunk_parameters(model))  # what model.finetune trains
            groups.append((trunk, cfg.optim.lr))
            modules["model"] = model
        super().__init__("stage1", total_steps, groups, modules, source)

    def counts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"tokens": count_target_tokens(batch)}

    def micro_step(self, batch: dict[str, Any], denoms: dict[str, torch.Tensor]) -> Metrics:
        model, frozen = self.model, self.frozen
        with torch.set_grad_enabled(not frozen):
            trunk = model.trunk_forward(batch["input_ids"])  # (B, S, D), in the loop's autocast dtype
        with fp32(trunk):  # the critic computes in fp32 (as in Stage 2)
            with torch.set_grad_enabled(not frozen):
                normed = model.normed_trunk(trunk.float()).float()
            loss, metrics, _ = critic_loss(self.head, normed, batch["response_mask"], batch["is_correct"],
                                           self.cfg.verifiable.critic, anchor=None, denom=denoms["tokens"])
        loss.backward()
        return {**metrics, "loss": loss.detach()}


class WeightedMTPStage(StagePlan):
    """Stage 2: weighted MTP on every head with the global valid-label denominator; the strategy supplies the
    weights (the same code for every experiment)."""

    def __init__(self, cfg: ResolvedConfig, models: Models, strategy: WeightingStrategy, source: BatchSource,
                 total_steps: int, profile: WeightProfile | None = None):
        model = models.policy
        groups: list[tuple[list[nn.Parameter], float]] = [(set_trainable(model, cfg.model), cfg.optim.lr)]
        critic_params = [p for m in strategy.trainable_modules() for p in m.parameters()]
        if critic_params:
            groups.append((critic_params, cfg.stage1.lr))
        modules: dict[str, nn.Module] = {"model": model}
        if models.value_head is not None:
            modules["value_head"] = models.value_head
        self.cfg, self.model, self.strategy, self.profile = cfg, model, strategy, profile
        super().__init__("stage2", total_steps, groups, modules, source,
                         extra_state={"strategy": strategy, **({"weight_profile": profile} if profile else {})})

    def counts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"labels": count_valid_labels(batch["labels"][..., 0]),  # positions
                "tokens": count_target_tokens(batch)}

    def micro_step(self, batch: dict[str, Any], denoms: dict[str, torch.Tensor]) -> Metrics:
        model, train = self.model, self.cfg.train
        trunk = model.trunk_forward(batch["input_ids"])  # (B, S, D), once
        prep = self.strategy.prepare(batch, model, trunk, denoms["tokens"])  # weighting: the strategy's weights
        out = weighted_mtp_loss(model, trunk, batch["labels"][..., :model.n_future], prep.weights,
                                denoms["labels"], train.head_coefs, impl=train.loss_impl,
                                chunk_size=train.chunk_size, logits_hook=prep.logits_hook,
                                head_reduction=train.head_reduction)  # -> loss
        out.backward()
        total = out.loss.detach()
        if prep.aux_loss is not None:
            prep.aux_loss.backward()
            total = total + prep.aux_loss.detach()
        mask = target_mask(batch)
        if self.profile is not None:
            self.profile.add(out.weights, mask)
        # weight_entropy/ess/last10_share over this micro-batch's target tokens, the same for every experiment
        return {**prep.collect_metrics(), **out.metrics, **weight_summary(out.weights, mask),
                "mtp_loss": out.loss.detach(), "loss": total}

    def after_update(self) -> None:
        self.strategy.after_optimizer_step()
