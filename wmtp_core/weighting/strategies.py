"""One interface for the three experiments, so the training loop has no per-experiment branches.

Per micro-batch the loop does (see docs/science.md):

    trunk = model.trunk_forward(batch["input_ids"])                       # (B, S, D), once
    prep = strategy.prepare(batch, model, trunk, token_denom)           # critic / reference work, no policy fwd
    out = weighted_mtp_loss(model, trunk, batch["labels"], prep.weights, denom, head_coefs, impl=...,
                            chunk_size=..., logits_hook=prep.logits_hook)
    out.backward()                                                      # sequential: trunk.backward(grad) once
    if prep.aux_loss is not None: prep.aux_loss.backward()              # value-head loss (Verifiable)
    metrics = {**prep.collect_metrics(), **out.metrics}
    ...optimizer.step()...; strategy.after_optimizer_step()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from wmtp_core.losses import IGNORE_INDEX, LogitsHook, WeightFn, linear_ce
from wmtp_core.model.value_head import ValueHead
from wmtp_core.weighting.ablation import AblationMode, ablate_weights
from wmtp_core.weighting.critic import CriticConfig, EmaAnchor, critic_loss
from wmtp_core.weighting.gae import gae, td_errors, terminal_rewards
from wmtp_core.weighting.global_batch import over_global_batch
from wmtp_core.weighting.metrics import masked_stats
from wmtp_core.weighting.rho1 import (
    excess_loss,
    next_token_kl,
    soft_weights,
    to_target_positions,
    topk_weights,
)
from wmtp_core.weighting.weights import WeightConfig, build_weights


class VerifiableConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    critic: CriticConfig = Field(default_factory=CriticConfig)
    weights: WeightConfig = Field(default_factory=WeightConfig)
    mode: AblationMode = "critic"
    # keep fitting the value head during Stage 2 (aux_loss); off as in the recipe: Stage 2 sees correct rows only
    train_critic: bool = False
    seed: int = 0  # ablation permutations


class Rho1Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["topk", "soft"] = "topk"
    ratio: float = Field(0.6, gt=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0.0)
    weight_min: float = Field(0.0, ge=0.0)
    weight_max: float | None = Field(None, ge=1.0)
    chunk_size: int = Field(1024, ge=1)
    # KL(model || ref) monitor: evenly spaced labelled next-token rows per micro-batch (null: every row). Each row
    # costs a reference output projection and two log-softmaxes over the vocabulary.
    kl_rows: int | None = Field(256, ge=1)


@dataclass
class PreparedWeights:
    """What a strategy hands the loss for one micro-batch."""

    # (B, S) per target position when known before the loss (the loss then forms every head's gradient in the
    # same chunk pass as its logits), or a WeightFn the loss calls with this forward's detached head-0 CE (B, S)
    weights: Tensor | WeightFn
    aux_loss: Tensor | None = None  # extra loss with grad (value head), already normalised
    metrics: dict[str, Tensor] = field(default_factory=dict)
    logits_hook: LogitsHook | None = None
    finalize: Callable[[], dict[str, Tensor]] | None = None

    def collect_metrics(self) -> dict[str, Tensor]:
        """Metrics of this micro-batch; call after the loss ran (hook results are added then)."""
        return {**self.metrics, **(self.finalize() if self.finalize is not None else {})}


class WeightingStrategy(Protocol):
    name: str

    def prepare(self, batch: Mapping[str, Any], model: nn.Module, trunk: Tensor,
                token_denom: Tensor | float | None = None) -> PreparedWeights: ...

    def trainable_modules(self) -> list[nn.Module]: ...

    def after_optimizer_step(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def fp32(like: Tensor) -> torch.autocast:
    """Autocast switched off on ``like``'s device: the critic and the weight builders compute in fp32."""
    return torch.autocast(like.device.type, enabled=False)


def target_mask(batch: Mapping[str, Any]) -> Tensor:
    """(B, S) bool: target positions that carry a weight = response tokens (EOS included), never position 0."""
    mask = batch["response_mask"].bool().clone()
    mask[:, 0] = False
    return mask


def count_target_tokens(batch: Mapping[str, Any]) -> Tensor:
    """Local count of target positions: sum it over accumulation/ranks and pass it as token_denom."""
    return target_mask(batch).sum()


class _Stateless:
    def trainable_modules(self) -> list[nn.Module]:
        return []

    def after_optimizer_step(self) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class BaselineStrategy(_Stateless):
    """Baseline MTP: weight 1 on every response token."""

    name = "baseline"

    def prepare(self, batch: Mapping[str, Any], model: nn.Module, trunk: Tensor,
                token_denom: Tensor | float | None = None) -> PreparedWeights:
        return PreparedWeights(target_mask(batch).to(torch.float32))


class VerifiableStrategy:
    """Verifiable Critic WMTP: value head -> TD errors -> GAE -> weights (optionally ablated)."""

    name = "verifiable"

    def __init__(self, value_head: ValueHead, cfg: VerifiableConfig, constant_value: float | None = None) -> None:
        self.value_head, self.cfg = value_head, cfg
        self.constant_value = constant_value  # V for mode constant_critic (the Stage 1 mean value)
        self.anchor: EmaAnchor | None = None  # copied from the head at first use (after Stage 1 weights load)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def _anchor(self) -> EmaAnchor:
        if self.anchor is None:
            self.anchor = EmaAnchor(self.value_head, self.cfg.critic.ema_decay)
        return self.anchor

    def prepare(self, batch: Mapping[str, Any], model: nn.Module, trunk: Tensor,
                token_denom: Tensor | float | None = None) -> PreparedWeights:
        mask = target_mask(batch)
        train = self.cfg.train_critic and torch.is_grad_enabled()
        with fp32(trunk):  # bf16 values would put rounding noise comparable to the TD signal into the weights
            with torch.no_grad():  # the value loss reaches no policy parameter (trunk, embeddings, shared norm)
                normed = model.normed_trunk(trunk.detach().float()).float()  # (B, S, D)
            with torch.set_grad_enabled(train):
                loss, metrics, values = critic_loss(self.value_head, normed, batch["response_mask"],
                                                    batch["is_correct"], self.cfg.critic, self._anchor(), token_denom)
            with torch.no_grad():
                w, wmetrics = self._weights(values.detach().float(), batch["is_correct"], mask, metrics)
        return PreparedWeights(w, aux_loss=loss if train else None, metrics={**metrics, **wmetrics})

    def _weights(self, values: Tensor, is_correct: Tensor, mask: Tensor, metrics: dict[str, Tensor]
                 ) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.cfg.critic
        if self.cfg.mode == "constant_critic":  # position-only control: V carries no token information
            if self.constant_value is None:
                raise ValueError("verifiable.mode 'constant_critic' needs the Stage 1 mean value (no Stage 1 "
                                 "history: run Stage 1 first)")
            values = torch.full_like(values, float(self.constant_value))
        rewards = terminal_rewards(is_correct, mask, c.reward_correct, c.reward_incorrect)
        delta = td_errors(values, rewards, mask, c.gamma)
        adv = gae(values, rewards, mask, c.gamma, c.lam)  # per sequence: local
        w, stats = over_global_batch(self._normalise, adv, mask)  # batch statistics span every rank
        return w, {**stats, **masked_stats(delta, mask, "td")}

    def _normalise(self, adv: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        w, stats = build_weights(adv, mask, self.cfg.weights)
        return ablate_weights(w, mask, self.cfg.mode, self.generator), stats

    def trainable_modules(self) -> list[nn.Module]:
        return [self.value_head] if self.cfg.train_critic else []

    def after_optimizer_step(self) -> None:
        self._anchor().update(self.value_head)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "constant_value": self.constant_value,
                "anchor": self.anchor.state_dict() if self.anchor is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.constant_value = state.get("constant_value", self.constant_value)
        if state["anchor"] is None:
            self.anchor = None
        else:
            self._anchor().load_state_dict(state["anchor"])


class Rho1Strategy(_Stateless):
    """Rho-1 Weighted: excess loss (model CE of this forward - reference CE) -> top-k% or soft weights."""

    name = "rho1"

    def __init__(self, ref_model: nn.Module, cfg: Rho1Config) -> None:
        self.ref = ref_model.requires_grad_(False).eval()
        self.cfg = cfg

    @torch.no_grad()
    def _reference(self, input_ids: Tensor, labels0: Tensor) -> tuple[Tensor, Tensor]:
        """Reference normed next-token hidden (B*S, Dr) and per-token CE (B, S)."""
        trunk = self.ref.trunk_forward(input_ids)
        hidden = self.ref.norm(self.ref.head_hidden(trunk, 0)).flatten(0, 1)
        rows = (labels0 != IGNORE_INDEX).flatten().nonzero().squeeze(1)  # labelled tokens only (one sync)
        ce_rows = linear_ce(hidden.index_select(0, rows), self.ref.output.weight,
                            labels0.flatten().index_select(0, rows), self.cfg.chunk_size)
        ce = torch.zeros(labels0.numel(), device=hidden.device, dtype=ce_rows.dtype).index_copy_(0, rows, ce_rows)
        return hidden, ce.view_as(labels0)

    def _weigh(self, excess: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if self.cfg.mode == "topk":
            w, selected = topk_weights(excess, mask, self.cfg.ratio)
            extra = {"rho1_selected_frac": selected.sum() / mask.sum().clamp_min(1)}
        else:
            w = soft_weights(excess, mask, self.cfg.temperature, self.cfg.weight_min,
                             self.cfg.weight_max if self.cfg.weight_max is not None else float("inf"))
            extra = masked_stats(w, mask, "weight")
        return w, {**masked_stats(excess, mask, "rho1_excess"), **extra}

    def prepare(self, batch: Mapping[str, Any], model: nn.Module, trunk: Tensor,
                token_denom: Tensor | float | None = None) -> PreparedWeights:
        if self.ref.output.weight.shape[0] != model.output.weight.shape[0]:
            raise ValueError(f"Rho-1 reference vocab {self.ref.output.weight.shape[0]} != model vocab "
                             f"{model.output.weight.shape[0]}: the reference must share the tokenizer")
        labels0 = batch["labels"][..., 0]
        valid0 = labels0 != IGNORE_INDEX  # (B, S)
        ref_hidden, ref_ce = self._reference(batch["input_ids"], labels0)
        kl_sum = torch.zeros((), device=ref_ce.device)
        kl_count = torch.zeros((), device=ref_ce.device)

        def weight_fn(model_ce: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            excess, mask = to_target_positions(excess_loss(model_ce.float(), ref_ce.float()), valid0)
            with fp32(excess):  # top-k / softmax over every rank's tokens, in fp32
                w, stats = over_global_batch(self._weigh, excess, mask)
            return w, {**stats, "rho1_ref_ce": (ref_ce * valid0).sum() / valid0.sum().clamp_min(1)}

        picked = kl_sample(valid0, self.cfg.kl_rows)  # (B*S,) bool

        def logits_hook(rows: Tensor, logits: Tensor) -> None:
            nonlocal kl_sum, kl_count
            sel = picked[rows]  # the sampled labelled rows of this chunk (a host sync; monitoring only)
            ref_logits = ref_hidden[rows[sel]] @ self.ref.output.weight.t()
            kl_sum = kl_sum + next_token_kl(logits[sel], ref_logits).sum()
            kl_count = kl_count + sel.sum()

        def finalize() -> dict[str, Tensor]:
            return {"rho1_kl_model_ref": kl_sum / kl_count.clamp_min(1)}

        return PreparedWeights(weight_fn, logits_hook=logits_hook, finalize=finalize)


def kl_sample(valid: Tensor, max_rows: int | None) -> Tensor:
    """(B*S,) bool: at most ``max_rows`` evenly spaced valid positions of ``valid`` (B, S); all when None."""
    flat = valid.flatten()
    if max_rows is None:
        return flat
    idx = flat.nonzero().squeeze(1)
    stride = max(1, -(-idx.numel() // max_rows))
    return torch.zeros_like(flat).index_fill_(0, idx[::stride], True)


StrategyName = Literal["baseline", "verifiable", "rho1"]


def make_strategy(name: StrategyName, *, value_head: ValueHead | None = None,
                  verifiable: VerifiableConfig | None = None, ref_model: nn.Module | None = None,
                  rho1: Rho1Config | None = None, constant_value: float | None = None) -> WeightingStrategy:
    """Build the strategy of experiment `name` through the registry (wmtp_core.experiments); raises naming the
    missing piece."""
    from wmtp_core.experiments import EXPERIMENTS  # the registry's builders import this module lazily

    if name not in EXPERIMENTS:
        raise ValueError(f"weighting strategy must be one of {list(EXPERIMENTS)}, got {name!r}")
    return EXPERIMENTS[name].strategy(value_head=value_head, verifiable=verifiable, ref_model=ref_model,
                                      rho1=rho1, constant_value=constant_value)
