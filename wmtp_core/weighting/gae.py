"""Masked TD errors, generalised advantage estimation and discounted returns (vectorised over the batch).

All tensors are (B, S) and aligned to TARGET positions u: values[:, u] is V(s_u), the value of the state just
before response token u is produced; rewards[:, u] the reward for producing token u; mask[:, u] True for
response tokens. An episode is a maximal run of True in mask: the value after its last token is 0 (terminal),
so delta at the last response token is r_T - V(s_T) and includes the terminal reward. Positions outside the
mask get 0. Time is scanned in reverse in blocks with tensor ops (S/64 loop steps, no host sync).
"""

from __future__ import annotations

import torch
from torch import Tensor

_BLOCK = 64  # time steps per block of the reverse scan


def _next_valid(mask: Tensor) -> Tensor:
    """(B, S) bool: position u+1 exists and is inside the same episode as u."""
    nxt = torch.zeros_like(mask)
    nxt[:, :-1] = mask[:, 1:] & mask[:, :-1]
    return nxt


def discounted_cumsum(x: Tensor, mask: Tensor, discount: float) -> Tensor:
    """out[u] = x[u] + discount * out[u+1] within each episode of mask; 0 outside the mask.

    Blocked reverse scan: inside a block of _BLOCK steps out = P @ x with P[u, j] = discount^(j-u) when no episode
    boundary lies in [u, j); the block's first value carries into the previous block. S/_BLOCK loop steps.
    """
    x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    breaks = (~_next_valid(mask)).to(torch.int32)  # 1 at u: u+1 is not in u's episode
    out = torch.empty_like(x)
    carry = torch.zeros_like(x[:, 0])  # out[:, end] of the block to the right
    for start in reversed(range(0, x.shape[1], _BLOCK)):
        end = min(start + _BLOCK, x.shape[1])
        brk = breaks[:, start:end]  # (B, k)
        before = brk.cumsum(dim=1) - brk  # boundaries strictly before each position, inside the block
        pos = torch.arange(end - start, device=x.device)
        dist = pos[None, :] - pos[:, None]  # (k, k): j - u
        powers = discount ** dist.clamp_min(0).to(x.dtype)
        linked = (dist >= 0)[None] & (before[:, None, :] == before[:, :, None])  # (B, k_u, k_j)
        local = torch.einsum("buj,bj->bu", torch.where(linked, powers[None], 0.0), x[:, start:end])
        open_to_end = (brk.sum(dim=1, keepdim=True) - before) == 0  # no boundary in [u, end)
        tail = torch.where(open_to_end, discount ** (end - start - pos).to(x.dtype)[None], 0.0)
        out[:, start:end] = local + tail * carry[:, None]
        carry = out[:, start]
    return out


def td_errors(values: Tensor, rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """delta_u = r_u + gamma * V_{u+1} - V_u over response tokens; V after the episode's last token is 0."""
    mask = mask.bool()
    next_values = torch.zeros_like(values)
    next_values[:, :-1] = values[:, 1:]
    next_values = next_values * _next_valid(mask).to(values.dtype)
    delta = rewards + gamma * next_values - values
    return torch.where(mask, delta, torch.zeros((), dtype=delta.dtype, device=delta.device))


def gae(values: Tensor, rewards: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """A_u = sum_l (gamma * lam)^l delta_{u+l} within the episode (GAE); 0 outside the mask."""
    mask = mask.bool()
    return discounted_cumsum(td_errors(values, rewards, mask, gamma), mask, gamma * lam)


def terminal_rewards(is_correct: Tensor, mask: Tensor, correct: float = 1.0, incorrect: float = 0.0) -> Tensor:
    """(B, S) rewards: `correct` or `incorrect` at each row's last response token (EOS), 0 elsewhere."""
    mask = mask.bool()
    counts = mask.sum(dim=1, keepdim=True)
    last = mask & (mask.cumsum(dim=1) == counts)  # (B, S) True only at the last True of each row
    per_row = torch.where(is_correct.bool(), correct, incorrect).to(torch.float32)  # (B,)
    return last.to(torch.float32) * per_row[:, None]


def value_targets(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Monte-Carlo returns G_u = sum_l gamma^l r_{u+l} within the episode (gamma^(T-u) * R for a terminal R)."""
    return discounted_cumsum(rewards, mask.bool(), gamma)


def state_values(values_out: Tensor) -> Tensor:
    """Value-head outputs per position t (state after token t) -> V(s_u) per target position u (shift right)."""
    shifted = torch.zeros_like(values_out)
    shifted[:, 1:] = values_out[:, :-1]
    return shifted
