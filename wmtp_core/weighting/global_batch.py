"""Token-weight statistics over the global micro-batch: the same accumulation index on every data-parallel rank.

Weights are normalised over a batch (z-score, softmax, entropy floor and mean-1 clipping for the critic; top-k% or
softmax of the excess loss for Rho-1). Under data parallelism each rank holds 1/world of the rows, so statistics
taken per rank would weight tokens differently from one process on the same global batch. ``over_global_batch``
all-gathers the (B, S) inputs (rows in rank order, padded to the longest S; padding is masked out), runs the
weighting function on the global tensors on every rank — identical inputs give identical results — and hands back
this rank's rows. One process (no process group) calls the function directly, and so does code inside
``rank_local()`` (the report probe, where every rank holds the same probe rows).

Cost per micro-batch: one all_gather of the (B, S) sizes and one of the stacked inputs (a few KiB per rank).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from wmtp_core import distributed as wd

Extra = TypeVar("Extra")
WeightingFn = Callable[[Tensor, Tensor], tuple[Tensor, Extra]]
_local_depth = 0


@contextmanager
def rank_local() -> Iterator[None]:
    """Inside this block weights are normalised over this rank's rows only (no collectives)."""
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def over_global_batch(fn: WeightingFn, values: Tensor, mask: Tensor) -> tuple[Tensor, Extra]:
    """fn(values, mask) over every rank's rows -> (this rank's rows of fn's (B, S) output, fn's extra result).

    values (B, S) float, mask (B, S) bool on this rank. ``fn`` must be deterministic given its inputs (a seeded
    generator advanced identically on every rank is fine): every rank runs it on the same global tensors.
    """
    if _local_depth or not wd.is_initialized() or dist.get_world_size() == 1:
        return fn(values, mask)
    sizes = _all_sizes(values)
    gathered = _gather_padded(torch.stack([values.float(), mask.float()]), sizes)  # (2, sum B, S_max)
    out, extra = fn(gathered[0].to(values.dtype), gathered[1].bool())
    rank = dist.get_rank()
    start = int(sizes[:rank, 0].sum())
    rows, cols = int(sizes[rank, 0]), int(sizes[rank, 1])
    return out[start:start + rows, :cols].contiguous(), extra


def _all_sizes(values: Tensor) -> Tensor:
    """(world, 2) long: every rank's (B, S)."""
    if values.dim() != 2:
        raise ValueError(f"over_global_batch expects (B, S) tensors, got shape {tuple(values.shape)}")
    device = wd._comm_device()
    local = torch.tensor(list(values.shape), dtype=torch.int64, device=device)
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    return torch.stack(parts).cpu()


def _gather_padded(stacked: Tensor, sizes: Tensor) -> Tensor:
    """(C, B_r, S_r) per rank -> (C, sum_r B_r, max_r S_r), rank order, zero padding."""
    device = wd._comm_device()
    b_max, s_max = int(sizes[:, 0].max()), int(sizes[:, 1].max())
    padded = stacked.new_zeros(stacked.shape[0], b_max, s_max, device=device)
    padded[:, : stacked.shape[1], : stacked.shape[2]] = stacked.to(device)
    parts = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, padded)
    rows = [part[:, : int(b), :] for part, (b, _s) in zip(parts, sizes.tolist(), strict=True)]
    return torch.cat(rows, dim=1).to(stacked.device)
