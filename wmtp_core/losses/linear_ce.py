"""Chunked output projection + cross-entropy that never holds more than one (chunk, V) logits block.

Forward computes, chunk by chunk, logits = hidden @ weight.T (fp32), the log-sum-exp and the per-token CE, and
keeps only the log-sum-exp (N,). Backward recomputes each chunk's logits and forms the gradient of the CE
directly, softmax - one_hot, scaled by the incoming per-token gradient. Pure PyTorch (cpu / cuda / mps).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

IGNORE_INDEX = -100
# Called without grad for each chunk: (flat token indices (n,), fp32 logits (n, V)).
LogitsHook = Callable[[Tensor, Tensor], None]


def linear_ce(hidden: Tensor, weight: Tensor, labels: Tensor, chunk_size: int = 1024,
              logits_hook: LogitsHook | None = None, row_ids: Tensor | None = None) -> Tensor:
    """Per-token CE (N,) (fp32, or fp64 for fp64 input) of softmax(hidden (N, D) @ weight (V, D).T) against labels (N,); 0 on -100.

    ``row_ids`` (N,) are the indices passed to ``logits_hook`` (default arange(N)).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if row_ids is None:
        row_ids = torch.arange(hidden.shape[0], device=hidden.device)
    return _LinearCE.apply(hidden, weight, labels, chunk_size, logits_hook, row_ids)


def _acc_dtype(hidden: Tensor) -> torch.dtype:
    return torch.promote_types(hidden.dtype, torch.float32)  # fp32 for bf16/fp16/fp32, fp64 stays fp64


def _chunk_logits(hidden: Tensor, weight: Tensor) -> Tensor:
    return (hidden @ weight.t()).to(_acc_dtype(hidden))  # (n, V)


class _LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, labels: Tensor, chunk_size: int,  # type: ignore[override]
                logits_hook: LogitsHook | None, row_ids: Tensor) -> Tensor:
        n_rows = hidden.shape[0]
        ce = torch.zeros(n_rows, device=hidden.device, dtype=_acc_dtype(hidden))
        lse = torch.zeros(n_rows, device=hidden.device, dtype=_acc_dtype(hidden))
        for start in range(0, n_rows, chunk_size):
            end = min(start + chunk_size, n_rows)
            logits = _chunk_logits(hidden[start:end], weight)
            if logits_hook is not None:
                logits_hook(row_ids[start:end], logits)
            lab = labels[start:end]
            chunk_lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, lab.clamp_min(0)[:, None]).squeeze(1)
            ce[start:end] = torch.where(lab != IGNORE_INDEX, chunk_lse - picked, 0.0)
            lse[start:end] = chunk_lse
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(hidden, weight, labels, lse)
        return ce

    @staticmethod
    def backward(ctx, grad_ce: Tensor):  # type: ignore[override]
        hidden, weight, labels, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.zeros_like(hidden) if need_h else None
        acc = _acc_dtype(hidden)
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=acc) if need_w else None
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            end = min(start + ctx.chunk_size, hidden.shape[0])
            h = hidden[start:end]
            lab = labels[start:end]
            scale = torch.where(lab != IGNORE_INDEX, grad_ce[start:end].to(acc), 0.0)  # (n,)
            grad_logits = _chunk_logits(h, weight).sub_(lse[start:end, None]).exp_().mul_(scale[:, None])
            grad_logits.scatter_add_(1, lab.clamp_min(0)[:, None], -scale[:, None])  # softmax - one_hot
            if grad_h is not None:
                grad_h[start:end] = (grad_logits.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_w is not None:
                grad_w.addmm_(grad_logits.t(), h.to(acc))
        return grad_h, (grad_w.to(weight.dtype) if grad_w is not None else None), None, None, None, None


def weighted_linear_ce(hidden: Tensor, weight: Tensor, labels: Tensor, token_scale: Tensor,
                       chunk_size: int = 1024, logits_hook: LogitsHook | None = None,
                       row_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(sum_i token_scale_i * CE_i as a differentiable scalar, detached per-token CE (N,)).

    When the per-token scale is known before the forward (the sequential MTP loss), the gradient is formed in
    the same chunk pass as the loss, so the logits are computed once instead of twice; backward only scales
    the stored (N, D) and (V, D) gradients.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if row_ids is None:
        row_ids = torch.arange(hidden.shape[0], device=hidden.device)
    return _FusedWeightedCE.apply(hidden, weight, labels, token_scale.detach(), chunk_size, logits_hook, row_ids)


class _FusedWeightedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, labels: Tensor, scale: Tensor,  # type: ignore[override]
                chunk_size: int, logits_hook: LogitsHook | None, row_ids: Tensor) -> tuple[Tensor, Tensor]:
        acc = _acc_dtype(hidden)
        ce = torch.zeros(hidden.shape[0], device=hidden.device, dtype=acc)
        grad_h = torch.zeros_like(hidden)
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=acc)
        for start in range(0, hidden.shape[0], chunk_size):
            end = min(start + chunk_size, hidden.shape[0])
            h, lab = hidden[start:end], labels[start:end]
            logits = _chunk_logits(h, weight)  # (n, V)
            if logits_hook is not None:
                logits_hook(row_ids[start:end], logits)
            valid = lab != IGNORE_INDEX
            target = lab.clamp_min(0)[:, None]
            chunk_lse = torch.logsumexp(logits, dim=-1)
            ce[start:end] = torch.where(valid, chunk_lse - logits.gather(1, target).squeeze(1), 0.0)
            s = torch.where(valid, scale[start:end].to(acc), 0.0)
            grad_logits = logits.sub_(chunk_lse[:, None]).exp_().mul_(s[:, None])  # in place: logits reused
            grad_logits.scatter_add_(1, target, -s[:, None])
            grad_h[start:end] = (grad_logits.to(weight.dtype) @ weight).to(hidden.dtype)
            grad_w.addmm_(grad_logits.t(), h.to(acc))
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(ce)
        return (ce * scale.to(acc)).sum(), ce

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_ce: Tensor):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        g = grad_loss.to(grad_w.dtype)
        return ((grad_h * g.to(grad_h.dtype)), (grad_w * g).to(ctx.weight_dtype),
                None, None, None, None, None)
