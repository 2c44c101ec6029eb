"""The one optimisation loop every stage and experiment runs.

Per optimizer step: draw `grad_accum` micro-batches, compute the GLOBAL loss denominator once (valid labels over
all micro-batches, and all ranks when distributed), run each micro-batch's forward+backward with that same
denominator (so accumulation equals one big batch), check loss and gradient are finite (else stop before the
update, leaving the last good checkpoint as the newest), clip, step AdamW and the warmup+cosine schedule.
Before a checkpoint is written the updated parameters are checked too: finite, and their global L2 norm at most
`max_param_norm_ratio` times the norm at the start of the stage (a finite loss does not prove sane weights: an
absurd learning rate leaves finite weights of 1e30 behind); a failed check stops without writing it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from wmtp_core import distributed as wd
from wmtp_core.config import OptimConfig
from wmtp_core.distributed_checkpoint import is_distributed_checkpoint, load_distributed_checkpoint
from wmtp_core.train.device import autocast, rng_state, set_rng_state
from wmtp_core.train.sampler import ResumableSampler
from wmtp_core.train.state import (
    Checkpoint,
    load_state,
    load_weights,
    save_checkpoint,
    save_sharded_checkpoint,
)

Batch = dict[str, Any]
Metrics = dict[str, torch.Tensor | float]


class NonFiniteError(RuntimeError):
    """Loss or gradient became NaN/inf; raised before the optimizer update."""


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StagePlan:
    """What one stage trains and how one micro-batch is processed; the loop does the rest.

    A stage (wmtp_core/train/stages.py) names what it trains in its constructor and defines `counts(batch)` (the
    local normaliser counts of a micro-batch, 0-dim each; the loop sums them over micro-batches and ranks) and
    `micro_step(batch, denoms)` (forward + backward with those global counts; returns metrics with "loss")."""

    def __init__(self, stage: str, total_steps: int, param_groups: list[tuple[list[nn.Parameter], float]],
                 modules: dict[str, nn.Module], source: Any, extra_state: dict[str, Stateful] | None = None):
        self.stage = stage
        self.total_steps = total_steps
        self.param_groups = param_groups  # (trainable params, peak lr)
        self.modules = modules  # saved as <name>.safetensors in every checkpoint
        self.source = source  # next_batch() draws from source.sampler
        self.sampler: ResumableSampler = source.sampler
        self.extra_state = extra_state or {}  # e.g. strategy EMA/normaliser state
        self.on_step: Callable[[int], None] | None = None  # after each optimizer step (plots etc.)

    def next_batch(self) -> Batch:
        return self.source.next_batch()

    def counts(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def micro_step(self, batch: Batch, denoms: dict[str, torch.Tensor]) -> Metrics:
        raise NotImplementedError

    def after_update(self) -> None:
        """Right after optimizer.step (e.g. an EMA anchor update); nothing by default."""


@dataclass
class LoopSettings:
    grad_accum: int
    checkpoint_every: int
    keep_checkpoints: int
    progress_bar: bool
    device: torch.device
    amp_dtype: torch.dtype | None
    checkpoint_root: Path
    config_hash: str
    stop_after: int | None = None  # simulate preemption: stop after this step (checkpoint first)
    manifest_extra: dict[str, Any] = field(default_factory=dict)  # merged into every checkpoint.json
    max_param_norm_ratio: float | None = 100.0  # None: only finiteness is checked before a checkpoint


@dataclass
class StageOutcome:
    stage: str
    steps_done: int
    completed: bool
    history: list[dict[str, float]]
    last_checkpoint: Checkpoint | None


def build_optimizer(param_groups: list[tuple[list[nn.Parameter], float]], cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over (params, lr) groups; matrices decay, vectors (norm gains, biases) do not."""
    groups = []
    for params, lr in param_groups:
        groups.append({"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay, "lr": lr})
        groups.append({"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "lr": lr})
    groups = [g for g in groups if g["params"]]
    kernel = _adamw_kernel(cfg.implementation, [p for g in groups for p in g["params"]])
    return torch.optim.AdamW(groups, betas=tuple(cfg.betas), eps=cfg.eps, **kernel)


_FUSED_DEVICES = ("cpu", "cuda", "mps")


def _adamw_kernel(implementation: str, params: list[nn.Parameter]) -> dict[str, bool]:
    """AdamW keyword for the configured kernel; `auto` picks fused unless a parameter is sharded (DTensor),
    non-float, or on a device without the fused kernel (then torch's own default)."""
    if implementation == "fused":
        return {"fused": True}
    if implementation == "foreach":
        return {"foreach": True}
    if implementation == "loop":
        return {"foreach": False}
    plain = all(type(p.data) is torch.Tensor and p.is_floating_point() and p.device.type in _FUSED_DEVICES
                for p in params)
    return {"fused": True} if plain and params else {}


def warmup_cosine(total_steps: int, warmup_ratio: float, min_lr_ratio: float) -> Callable[[int], float]:
    """LR multiplier at scheduler step s: linear warmup to 1, then cosine down to `min_lr_ratio` at the end."""
    warmup = min(int(math.ceil(warmup_ratio * total_steps)), max(total_steps - 1, 0))

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / (warmup + 1)
        span = max(total_steps - warmup, 1)
        progress = min((s - warmup) / span, 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def global_denominators(local_counts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each named count (e.g. valid labels D) summed over every micro-batch of the step and every rank.

    The one place a loss normaliser is formed: one all_reduce when torch.distributed is initialised.
    """
    names = sorted(local_counts[0])
    totals = torch.stack([torch.stack([c[n].to(torch.float32) for c in local_counts]).sum() for n in names])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(totals)
    return {n: t.clamp_min(1.0) for n, t in zip(names, totals, strict=True)}


def _scalar(value: torch.Tensor | float) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


# Loss terms normalised by a global (whole-step) count: their micro-batch parts add up. Others are averaged.
SUMMED_METRICS = frozenset({"loss", "mtp_loss", "value_loss", "drift_penalty"})


def _combine(per_micro: list[Metrics]) -> dict[str, float]:
    """Global-normalised loss terms add up over micro-batches; other metrics are averaged."""
    keys = {k for m in per_micro for k in m}
    out = {}
    for key in sorted(keys):
        vals = [_scalar(m[key]) for m in per_micro if key in m]
        out[key] = sum(vals) if key in SUMMED_METRICS else sum(vals) / len(vals)
    return out


def _last_good(last: Checkpoint | None) -> str:
    return f"last good checkpoint: {last.path}" if last else "no checkpoint was written before it"


def _check_finite(stage: str, step: int, what: str, value: float, last: Checkpoint | None) -> None:
    if math.isfinite(value):
        return
    raise NonFiniteError(f"{stage} step {step}: {what} is {value}; stopped before the optimizer update "
                         f"({_last_good(last)})")


def parameter_norm(params: list[nn.Parameter]) -> float:
    """Global L2 norm of `params`: plain tensors in float64; sharded DTensors combined over ranks (collective)."""
    sharded = [p.detach() for p in params if hasattr(p, "to_local")]
    plain = [p.detach() for p in params if not hasattr(p, "to_local")]
    squares = sum((float(torch.linalg.vector_norm(t, dtype=torch.float64)) ** 2 for t in plain), 0.0)
    if sharded:
        squares += float(torch.nn.utils.get_total_norm(sharded).full_tensor()) ** 2
    return math.sqrt(squares)


def check_parameters(stage: str, step: int, norm: float, initial: float, ratio: float | None,
                     last: Checkpoint | None) -> None:
    """Raise NonFiniteError (no checkpoint gets written) when the parameters are not finite or their norm grew
    past `ratio` x the stage's initial norm."""
    if not math.isfinite(norm):
        raise NonFiniteError(f"{stage} step {step}: parameter norm is {norm} (weights not finite or overflowing); "
                             f"checkpoint not written ({_last_good(last)})")
    if ratio is not None and initial > 0 and norm > ratio * initial:
        raise NonFiniteError(f"{stage} step {step}: parameter norm {norm:.4g} exceeds {ratio:g} x the initial "
                             f"{initial:.4g} (train.max_param_norm_ratio); the update diverged, checkpoint not "
                             f"written ({_last_good(last)})")


class StageLoop:
    def __init__(self, plan: StagePlan, settings: LoopSettings, optim_cfg: OptimConfig,
                 log: Callable[[dict[str, float], int], None]) -> None:
        self.plan, self.settings, self.log = plan, settings, log
        self.params = [p for params, _ in plan.param_groups for p in params]
        self.optimizer = build_optimizer(plan.param_groups, optim_cfg)
        factor = warmup_cosine(plan.total_steps, optim_cfg.warmup_ratio, optim_cfg.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.grad_clip = optim_cfg.grad_clip
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.last_checkpoint: Checkpoint | None = None
        self.initial_norm = parameter_norm(self.params)  # replaced by the saved one on restore

    # --- checkpoint state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"stage": self.plan.stage, "step": self.step, "total_steps": self.plan.total_steps,
                "optimizer": None if wd.is_initialized() else self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(), "sampler": self.plan.sampler.state_dict(), "history": self.history,
                "extra": {k: v.state_dict() for k, v in self.plan.extra_state.items()},
                "config_hash": self.settings.config_hash, "initial_param_norm": self.initial_norm}

    def restore(self, ckpt: Checkpoint) -> None:
        if is_distributed_checkpoint(ckpt.path):  # written under torchrun: any world size (or 1 process) loads it
            state = load_distributed_checkpoint(ckpt.path, self.plan.modules, self.optimizer)
        elif wd.is_initialized():
            raise ValueError(f"{ckpt.path}: single-process checkpoint; resume it without torchrun")
        else:
            for name, module in self.plan.modules.items():
                load_weights(ckpt, name, module)
            state = load_state(ckpt)
        if state["stage"] != self.plan.stage:
            raise ValueError(f"{ckpt.path}: checkpoint is for {state['stage']}, not {self.plan.stage}")
        if state["optimizer"] is not None:  # None: distributed checkpoint, restored above
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.plan.sampler.load_state_dict(state["sampler"])
        for key, obj in self.plan.extra_state.items():
            obj.load_state_dict(state["extra"][key])
        set_rng_state(state["rng"])
        self.step, self.history, self.last_checkpoint = int(state["step"]), list(state["history"]), ckpt
        self.initial_norm = float(state.get("initial_param_norm", self.initial_norm))

    def save(self) -> Checkpoint:
        s = self.settings
        check_parameters(self.plan.stage, self.step, parameter_norm(self.params), self.initial_norm,
                         s.max_param_norm_ratio, self.last_checkpoint)
        if wd.is_initialized():
            self.last_checkpoint = save_sharded_checkpoint(s.checkpoint_root, self.plan.stage, self.step,
                                                           self.plan.modules, self.optimizer, self.state(),
                                                           s.keep_checkpoints, s.manifest_extra)
        else:
            self.last_checkpoint = save_checkpoint(s.checkpoint_root, self.plan.stage, self.step, self.plan.modules,
                                                   self.state(), s.keep_checkpoints, s.manifest_extra)
        return self.last_checkpoint

    # --- one optimizer step -----------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        plan, s = self.plan, self.settings
        step = self.step + 1
        micro = [plan.next_batch() for _ in range(s.grad_accum)]
        denoms = global_denominators([plan.counts(b) for b in micro])
        self.optimizer.zero_grad(set_to_none=True)
        per_micro = []
        for batch in micro:
            with autocast(s.device, s.amp_dtype):
                per_micro.append(plan.micro_step(batch, denoms))
        metrics = _combine(per_micro)
        metrics["tokens"] = float(sum(int(b["attention_mask"].sum()) for b in micro))
        metrics = wd.reduce_metrics(metrics, SUMMED_METRICS | {"tokens"})  # global over ranks (no-op in 1 process)
        _check_finite(plan.stage, step, "loss", metrics["loss"], self.last_checkpoint)
        wd.all_reduce_grads(self.params)  # replicated modules (value head); FSDP reduced the sharded ones
        grad_norm = wd.clip_grad_norm(self.params, self.grad_clip)
        _check_finite(plan.stage, step, "gradient norm", grad_norm, self.last_checkpoint)
        metrics.update(grad_norm=grad_norm, lr=self.scheduler.get_last_lr()[0],
                       **{f"denom_{k}": float(v) for k, v in denoms.items()})
        self.optimizer.step()
        plan.after_update()
        self.scheduler.step()
        self.step = step
        if plan.on_step is not None:
            plan.on_step(step)
        return metrics

    def run(self) -> StageOutcome:
        plan, s = self.plan, self.settings
        bar = _progress(plan.stage, plan.total_steps, self.step, s.progress_bar)
        try:
            while self.step < plan.total_steps:
                started = time.perf_counter()
                metrics = self.train_step()
                metrics["tokens_per_s"] = metrics["tokens"] / max(time.perf_counter() - started, 1e-9)
                self.history.append({"step": float(self.step), **metrics})
                self.log(metrics, self.step)
                _advance(bar, metrics)
                done = self.step == plan.total_steps
                stopping = s.stop_after is not None and self.step >= s.stop_after
                if done or stopping or self.step % s.checkpoint_every == 0:
                    self.save()
                if stopping and not done:
                    return StageOutcome(plan.stage, self.step, False, self.history, self.last_checkpoint)
        finally:
            if bar is not None:
                bar.close()
        return StageOutcome(plan.stage, self.step, True, self.history, self.last_checkpoint)


def _progress(stage: str, total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=stage, unit="step", dynamic_ncols=True)


def _advance(bar: Any, metrics: dict[str, float]) -> None:
    if bar is None:
        return
    bar.set_postfix(loss=f"{metrics['loss']:.4f}", tok_s=f"{metrics['tokens_per_s']:.0f}")
    bar.update(1)
