"""Weighted multi-token-prediction cross-entropy with a global normaliser.

Loss = r * sum_k c_k * sum_{b,t} w[b, t+k+1] * CE_k[b, t] / D, where head k (0-based) at position t predicts
token t+k+1, w (B, S) is a per-TARGET-position weight, c_k a per-head coefficient and D the global count of
predicting positions, i.e. head-0 labels != -100 (``count_valid_labels(labels[..., 0])``) over every micro-batch
and rank (the caller sums it; never a per-micro-batch mean). ``head_reduction`` sets r: ``sum`` (r = 1, the MTP
paper's sum of the heads' per-position losses) or ``mean`` (r = 1 / F). Two implementations give identical values
and gradients:

* ``naive``: full (B, S, V) logits per head, one graph; the caller runs ``out.backward()``.
* ``sequential``: the MTP paper's scheme. The trunk output is detached once; each head runs its block + shared
  norm/output + CE (chunked over tokens by ``linear_ce``, never materialising (B, S, V)) and back-propagates
  immediately into the detached copy, whose gradient accumulates; ``out.backward()`` then runs
  ``trunk.backward(trunk_grad)`` once.

``weights`` may be a tensor or a callable receiving the detached next-token per-token CE (B, S) of this very
forward (so Rho-1 builds its weights without a second policy forward).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from wmtp_core.losses.linear_ce import LogitsHook, linear_ce, weighted_linear_ce

IGNORE_INDEX = -100
WeightFn = Callable[[Tensor], tuple[Tensor, dict[str, Tensor]]]
LossImpl = Literal["naive", "sequential"]
HeadReduction = Literal["sum", "mean"]


@dataclass
class MTPLossOutput:
    """Result of ``weighted_mtp_loss``. Unpacks as ``loss, metrics = out`` (the contract's pair)."""

    loss: Tensor  # scalar; naive: attached to the graph, sequential: detached value (grads already taken)
    metrics: dict[str, Tensor]  # detached 0-dim tensors (no host sync); call .item() when logging
    head_ce: Tensor  # (B, S, F) detached per-token CE, 0 where the label is ignored
    weights: Tensor  # (B, S) the per-target-position weights that were applied
    trunk: Tensor | None = field(default=None, repr=False)
    trunk_grad: Tensor | None = field(default=None, repr=False)  # sequential: d loss / d trunk (B, S, D)

    def __iter__(self) -> Iterator[object]:
        return iter((self.loss, self.metrics))

    def backward(self) -> None:
        """Back-propagate the loss into the trunk and embeddings (heads are already done when sequential)."""
        if self.trunk_grad is None:
            self.loss.backward()
        elif self.trunk is not None and self.trunk.requires_grad:
            # d/d trunk of sum(trunk * g) is exactly g; same as trunk.backward(g) without the lazy sympy import
            # torch performs for explicit gradient tensors (seconds where bytecode caching is off)
            (self.trunk * self.trunk_grad.to(self.trunk.dtype)).sum().backward()


def count_valid_labels(labels: Tensor) -> Tensor:
    """Number of labels != -100 (0-dim long); of ``labels[..., 0]``: the local part of the loss denominator D."""
    return (labels != IGNORE_INDEX).sum()


def target_weights(w: Tensor, n_future: int) -> Tensor:
    """(B, S) per-target-position weights -> (B, S, F) with out[b, t, k] = w[b, t+k+1] (0 past the end)."""
    bsz, seqlen = w.shape
    out = w.new_zeros(bsz, seqlen, n_future)
    for k in range(n_future):
        shift = k + 1
        if shift < seqlen:
            out[:, : seqlen - shift, k] = w[:, shift:]
    return out


def per_token_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-token cross-entropy in fp32: logits (..., V), labels (...) -> (...), 0 where label == -100."""
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="none")
    return flat.view(labels.shape)


def weighted_mtp_loss(model: torch.nn.Module, trunk: Tensor, labels: Tensor, weights: Tensor | WeightFn,
                      denom: Tensor | float, head_coefs: Sequence[float] | None = None,
                      impl: LossImpl = "naive", chunk_size: int = 1024,
                      logits_hook: LogitsHook | None = None, head_reduction: HeadReduction = "sum") -> MTPLossOutput:
    """Weighted MTP CE over heads 0..F-1 of ``model`` (vendor Transformer) on the trunk output (B, S, D).

    labels (B, S, F) long with -100 ignored; F may be smaller than model.n_future (heads 0..F-1 are used).
    weights: (B, S) per target position, or a WeightFn called with the detached head-0 CE (B, S).
    denom: global count D of head-0 valid labels. head_coefs: c_k per head (default 1). head_reduction: ``sum``
    over heads (the paper's) or ``mean`` (sum / F). logits_hook(rows, logits) is called without grad on head 0's
    fp32 logits for flat token indices ``rows`` (monitoring, e.g. KL).
    """
    n_heads = labels.shape[-1]
    coefs = _check_coefs(head_coefs, n_heads)
    if head_reduction == "mean":
        coefs = [c / n_heads for c in coefs]
    elif head_reduction != "sum":
        raise ValueError(f"head_reduction must be 'sum' or 'mean', got {head_reduction!r}")
    if impl == "naive":
        return _naive(model, trunk, labels, weights, denom, coefs, logits_hook)
    if impl == "sequential":
        return _sequential(model, trunk, labels, weights, denom, coefs, chunk_size, logits_hook)
    raise ValueError(f"loss impl must be 'naive' or 'sequential', got {impl!r}")


def _check_coefs(head_coefs: Sequence[float] | None, n_heads: int) -> list[float]:
    coefs = [1.0] * n_heads if head_coefs is None else [float(c) for c in head_coefs]
    if len(coefs) != n_heads:
        raise ValueError(f"head_coefs has {len(coefs)} entries but labels have {n_heads} heads")
    return coefs


def _resolve_weights(weights: Tensor | WeightFn, head0_ce: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    if isinstance(weights, Tensor):
        return weights, {}
    w, metrics = weights(head0_ce.detach())
    return w, metrics


def _naive(model: torch.nn.Module, trunk: Tensor, labels: Tensor, weights: Tensor | WeightFn,
           denom: Tensor | float, coefs: list[float], logits_hook: LogitsHook | None) -> MTPLossOutput:
    ces = []
    for k in range(labels.shape[-1]):
        logits = model.head_logits(trunk, k)  # (B, S, V)
        if k == 0 and logits_hook is not None:
            with torch.no_grad():
                flat = logits.detach().flatten(0, 1).float()
                logits_hook(torch.arange(flat.shape[0], device=flat.device), flat)
        ces.append(per_token_ce(logits, labels[..., k]))
    w, wmetrics = _resolve_weights(weights, ces[0])
    wt = target_weights(w.to(ces[0].dtype), len(ces))  # (B, S, F)
    loss = sum(c * (wt[..., k] * ce).sum() for k, (c, ce) in enumerate(zip(coefs, ces))) / denom
    head_ce = torch.stack([ce.detach() for ce in ces], dim=-1)
    metrics = {**_head_metrics(head_ce, wt.detach(), labels), **wmetrics, "loss": loss.detach()}
    return MTPLossOutput(loss, metrics, head_ce, w.detach())


def _sequential(model: torch.nn.Module, trunk: Tensor, labels: Tensor, weights: Tensor | WeightFn,
                denom: Tensor | float, coefs: list[float], chunk_size: int,
                logits_hook: LogitsHook | None) -> MTPLossOutput:
    grad_on = torch.is_grad_enabled()
    detached = trunk.detach().requires_grad_(grad_on)
    bsz, seqlen, n_heads = labels.shape
    valid = labels != IGNORE_INDEX  # (B, S, F)
    rows = valid.any(-1).flatten().nonzero().squeeze(1)  # one host sync per call: compacted token rows
    w: Tensor | None = None
    wmetrics: dict[str, Tensor] = {}
    total = trunk.new_zeros((), dtype=torch.float32)
    head_ce = torch.zeros(bsz * seqlen, n_heads, device=trunk.device,
                          dtype=torch.promote_types(trunk.dtype, torch.float32))
    for k in range(n_heads):
        hidden = model.norm(model.head_hidden(detached, k)).flatten(0, 1).index_select(0, rows)  # (R, D)
        labels_k = labels[..., k].flatten().index_select(0, rows)
        hook = logits_hook if k == 0 else None
        known: Tensor | None = None
        if w is None:  # resolve weights; a callable needs this forward's head-0 CE first
            if isinstance(weights, Tensor):
                w = weights
            else:  # forward-only pass for the CE the weights are built from; gradients below
                with torch.no_grad():
                    ce0 = linear_ce(hidden, model.output.weight, labels_k, chunk_size, hook, row_ids=rows)
                head_ce[:, 0].index_copy_(0, rows, ce0)
                w, wmetrics = _resolve_weights(weights, head_ce[:, 0].view(bsz, seqlen))
                hook, known = None, ce0
            wt = target_weights(w.to(torch.float32), n_heads).flatten(0, 1)  # (B*S, F)
        scale = coefs[k] * wt[:, k].index_select(0, rows) / denom  # (R,) d loss / d CE_k per token
        loss_k, ce_rows = _head_loss(hidden, model.output.weight, labels_k, scale, chunk_size, hook, rows,
                                     grad_on, known)
        if ce_rows is not None:
            head_ce[:, k].index_copy_(0, rows, ce_rows)
        if grad_on and loss_k.requires_grad:
            loss_k.backward()
        total = total + loss_k.detach()
    head_ce = head_ce.view(bsz, seqlen, n_heads)
    metrics = {**_head_metrics(head_ce, wt.view(bsz, seqlen, n_heads), labels), **wmetrics, "loss": total}
    return MTPLossOutput(total, metrics, head_ce, w.detach(), trunk=trunk,
                         trunk_grad=detached.grad if grad_on else None)


def _head_loss(hidden: Tensor, weight: Tensor, labels: Tensor, scale: Tensor, chunk_size: int,
               hook: LogitsHook | None, rows: Tensor, grad_on: bool, known: Tensor | None
               ) -> tuple[Tensor, Tensor | None]:
    """One head's weighted CE sum over rows (R,) and its per-row CE (None when ``known``, the CE already known).

    With gradients, only rows with a non-zero scale (weight) and a label do gradient work — their gradient is
    formed in the same chunk pass as their logits; the other labelled rows get a forward-only CE for the metrics
    (skipped when the CE is already known). One host sync (the live-row count) per head.
    """
    if not grad_on:
        if known is not None:
            return (scale * known).sum(), None
        ce = linear_ce(hidden, weight, labels, chunk_size, hook, row_ids=rows)
        return (scale * ce).sum(), ce
    labelled = labels != IGNORE_INDEX
    live = labelled & (scale != 0)
    idx = live.nonzero().squeeze(1)
    loss, ce_live = weighted_linear_ce(hidden.index_select(0, idx), weight, labels.index_select(0, idx),
                                       scale.index_select(0, idx), chunk_size, hook, row_ids=rows.index_select(0, idx))
    if known is not None:
        return loss, None
    ce = torch.zeros(labels.shape[0], device=hidden.device, dtype=ce_live.dtype).index_copy_(0, idx, ce_live)
    dead = (labelled & ~live).nonzero().squeeze(1)
    if dead.numel():
        with torch.no_grad():
            ce_dead = linear_ce(hidden.index_select(0, dead), weight, labels.index_select(0, dead), chunk_size, hook,
                                row_ids=rows.index_select(0, dead))
        ce.index_copy_(0, dead, ce_dead.to(ce.dtype))
    return loss, ce


def _head_metrics(head_ce: Tensor, wt: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Per head: unweighted mean CE and weighted CE (sum w*CE / n_k) over that head's valid labels."""
    valid = labels != IGNORE_INDEX
    counts = valid.sum(dim=(0, 1)).clamp_min(1).to(head_ce.dtype)  # (F,)
    ce_mean = head_ce.sum(dim=(0, 1)) / counts
    wce = (head_ce * wt * valid).sum(dim=(0, 1)) / counts
    metrics: dict[str, Tensor] = {}
    for k in range(head_ce.shape[-1]):
        metrics[f"ce_head{k}"] = ce_mean[k]
        metrics[f"wce_head{k}"] = wce[k]
    return metrics
