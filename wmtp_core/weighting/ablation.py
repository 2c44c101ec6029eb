"""Ablation controls that keep the weights' distribution but break their link to the critic (seeded).

shuffled:        permute each sequence's weights among that sequence's valid tokens (per-sequence multiset kept).
random_matched:  permute the weights among all valid tokens of the batch, i.e. draw without replacement from the
                 critic weights' empirical per-batch distribution (batch mean, bounds and histogram kept).
position_matched: permute the weights among valid tokens of the batch at the same distance to their row's last
                 response token (position.py): the weight-by-position profile is kept, token information is not.
constant_critic: not a permutation: the strategy replaces V by a constant before TD/GAE (strategies.py); here it
                 passes the weights through like `critic`.
Random keys are drawn on the CPU generator (reproducible and checkpointable), then moved to the weights' device.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from wmtp_core.weighting.position import position_matched

AblationMode = Literal["critic", "shuffled", "random_matched", "position_matched", "constant_critic"]


def _permute_rows(w: Tensor, mask: Tensor, generator: torch.Generator) -> Tensor:
    """Per row of (G, L): a random permutation of the valid entries placed on the valid positions."""
    keys = torch.rand(w.shape, generator=generator).to(w.device)
    keys = torch.where(mask, keys, torch.full_like(keys, 2.0))  # invalid entries sort last
    source = torch.argsort(keys, dim=1)  # valid positions in random order, then invalid ones
    dest = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # valid positions in order, then invalid
    out = torch.zeros_like(w)
    out.scatter_(1, dest, w.gather(1, source))
    return out * mask


def ablate_weights(w: Tensor, mask: Tensor, mode: AblationMode, generator: torch.Generator) -> Tensor:
    """Apply an ablation to critic weights w (B, S); `critic` returns w unchanged."""
    mask = mask.bool()
    if mode in ("critic", "constant_critic"):
        return w
    if mode == "shuffled":
        return _permute_rows(w, mask, generator)
    if mode == "random_matched":
        return _permute_rows(w.reshape(1, -1), mask.reshape(1, -1), generator).view_as(w)
    if mode == "position_matched":
        return position_matched(w, mask, generator)
    raise ValueError(f"weighting mode must be one of {list(get_args(AblationMode))}, got {mode!r}")
