"""Chunked output projection + cross-entropy that never holds more than one (chunk, V) logits block.

Logits = hidden @ weight.T are formed chunk by chunk in the compute dtype (the autocast dtype when autocast is on
at the call, else the promoted input dtype), then upcast to fp32 (fp64 stays fp64) for log-sum-exp and CE.
``linear_ce`` keeps only the log-sum-exp (N,) and recomputes each chunk's logits in backward;
``weighted_linear_ce`` already knows the per-token loss scale and forms the gradient (softmax - one_hot) in the
same chunk pass, so the logits are computed once. Both run autocast-off internally with an explicit dtype so
forward and backward agree. Pure PyTorch (cpu / cuda / mps).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

IGNORE_INDEX = -100
# Called without grad for each chunk: (flat token indices (n,), fp32 logits (n, V)).
LogitsHook = Callable[[Tensor, Tensor], None]


def _acc_dtype(hidden: Tensor) -> torch.dtype:
    return torch.promote_types(hidden.dtype, torch.float32)  # fp32 for bf16/fp16/fp32, fp64 stays fp64


def _compute_dtype(hidden: Tensor, weight: Tensor) -> torch.dtype:
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _check(chunk_size: int, hidden: Tensor, row_ids: Tensor | None) -> Tensor:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return torch.arange(hidden.shape[0], device=hidden.device) if row_ids is None else row_ids


def linear_ce(hidden: Tensor, weight: Tensor, labels: Tensor, chunk_size: int = 1024,
              logits_hook: LogitsHook | None = None, row_ids: Tensor | None = None) -> Tensor:
    """Per-token CE (N,) of softmax(hidden (N, D) @ weight (V, D).T) against labels (N,); 0 on -100.

    ``row_ids`` (N,) are the indices passed to ``logits_hook`` (default arange(N)).
    """
    row_ids = _check(chunk_size, hidden, row_ids)
    return _LinearCE.apply(hidden, weight, labels, chunk_size, logits_hook, row_ids,
                           _compute_dtype(hidden, weight))


def weighted_linear_ce(hidden: Tensor, weight: Tensor, labels: Tensor, token_scale: Tensor,
                       chunk_size: int = 1024, logits_hook: LogitsHook | None = None,
                       row_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(sum_i token_scale_i * CE_i as a differentiable scalar, detached per-token CE (N,)).

    When the per-token scale is known before the forward (the sequential MTP loss), the gradient is formed in
    the same chunk pass as the loss; backward only scales the stored (N, D) and (V, D) gradients.
    """
    row_ids = _check(chunk_size, hidden, row_ids)
    return _FusedWeightedCE.apply(hidden, weight, labels, token_scale.detach(), chunk_size, logits_hook, row_ids,
                                  _compute_dtype(hidden, weight))


def _chunk_ce_softmax_(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(CE (n,), log-sum-exp (n,), softmax written over ``logits``): one max, one exp, one sum pass, in place.

    No (n, V) temporary beyond the logits themselves (``torch.logsumexp`` would allocate one)."""
    picked = logits.gather(1, labels.clamp_min(0)[:, None]).squeeze(1)
    peak = logits.amax(dim=-1)
    probs = logits.sub_(peak[:, None]).exp_()
    total = probs.sum(dim=-1)
    probs.div_(total[:, None])
    lse = peak + total.log()
    return torch.where(labels != IGNORE_INDEX, lse - picked, 0.0), lse, probs


def _accumulate_(grad_w: Tensor, grad_logits: Tensor, h: Tensor) -> None:
    """grad_w (V, D, fp32) += grad_logits.T @ h; in place (no (V, D) temporary) when the dtypes agree."""
    if grad_logits.dtype == grad_w.dtype and h.dtype == grad_w.dtype:
        grad_w.addmm_(grad_logits.t(), h)
    else:  # low-precision compute (autocast): matmul in that dtype, accumulate in fp32
        grad_w.add_(grad_logits.t() @ h)


def _softmax_grad_(logits: Tensor, lse: Tensor, labels: Tensor, scale: Tensor) -> Tensor:
    """In place: scale * (softmax(logits) - one_hot(labels)), zero rows where the label is -100."""
    return _probs_grad_(logits.sub_(lse[:, None]).exp_(), labels, scale)


def _probs_grad_(probs: Tensor, labels: Tensor, scale: Tensor) -> Tensor:
    """In place: scale * (probs - one_hot(labels)), zero rows where the label is -100."""
    s = torch.where(labels != IGNORE_INDEX, scale.to(probs.dtype), 0.0)  # (n,)
    grad = probs.mul_(s[:, None])
    return grad.scatter_add_(1, labels.clamp_min(0)[:, None], -s[:, None])


class _LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, labels: Tensor, chunk_size: int,  # type: ignore[override]
                logits_hook: LogitsHook | None, row_ids: Tensor, cdtype: torch.dtype) -> Tensor:
        acc = _acc_dtype(hidden)
        ce = torch.zeros(hidden.shape[0], device=hidden.device, dtype=acc)
        lse = torch.zeros_like(ce)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(cdtype)
            for start in range(0, hidden.shape[0], chunk_size):
                end = min(start + chunk_size, hidden.shape[0])
                logits = (hidden[start:end].to(cdtype) @ w.t()).to(acc)  # (n, V)
                if logits_hook is not None:
                    logits_hook(row_ids[start:end], logits)
                ce[start:end], lse[start:end], _ = _chunk_ce_softmax_(logits, labels[start:end])  # logits spent
                del logits  # free this chunk's (n, V) block before the next one is allocated
        ctx.chunk_size, ctx.cdtype = chunk_size, cdtype
        ctx.save_for_backward(hidden, weight, labels, lse)
        return ce

    @staticmethod
    def backward(ctx, grad_ce: Tensor):  # type: ignore[override]
        hidden, weight, labels, lse = ctx.saved_tensors
        cdtype, acc = ctx.cdtype, lse.dtype
        grad_h = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=acc) if ctx.needs_input_grad[1] else None
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(cdtype)
            for start in range(0, hidden.shape[0], ctx.chunk_size):
                end = min(start + ctx.chunk_size, hidden.shape[0])
                h = hidden[start:end].to(cdtype)
                grad_logits = _softmax_grad_((h @ w.t()).to(acc), lse[start:end], labels[start:end],
                                             grad_ce[start:end]).to(cdtype)
                if grad_h is not None:
                    grad_h[start:end] = (grad_logits @ w).to(hidden.dtype)
                if grad_w is not None:
                    _accumulate_(grad_w, grad_logits, h)
                del grad_logits
        return (grad_h, grad_w.to(weight.dtype) if grad_w is not None else None, None, None, None, None, None)


class _FusedWeightedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, labels: Tensor, scale: Tensor,  # type: ignore[override]
                chunk_size: int, logits_hook: LogitsHook | None, row_ids: Tensor,
                cdtype: torch.dtype) -> tuple[Tensor, Tensor]:
        acc = _acc_dtype(hidden)
        ce = torch.zeros(hidden.shape[0], device=hidden.device, dtype=acc)
        grad_h = torch.zeros_like(hidden)
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=acc)
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(cdtype)
            for start in range(0, hidden.shape[0], chunk_size):
                end = min(start + chunk_size, hidden.shape[0])
                h, lab = hidden[start:end].to(cdtype), labels[start:end]
                logits = (h @ w.t()).to(acc)  # (n, V)
                if logits_hook is not None:
                    logits_hook(row_ids[start:end], logits)
                ce[start:end], _lse, probs = _chunk_ce_softmax_(logits, lab)  # probs overwrite the logits
                grad_logits = _probs_grad_(probs, lab, scale[start:end]).to(cdtype)  # in place again
                grad_h[start:end] = (grad_logits @ w).to(hidden.dtype)
                _accumulate_(grad_w, grad_logits, h)
                del logits, probs, grad_logits  # one (n, V) block alive at a time
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(ce)
        return (ce * scale.to(acc)).sum(), ce

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_ce: Tensor):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors  # the forward's own buffers, used once: scaled in place
        g = grad_loss.to(grad_w.dtype)
        return (grad_h.mul_(g.to(grad_h.dtype)), grad_w.mul_(g).to(ctx.weight_dtype), None, None, None, None, None,
                None)
