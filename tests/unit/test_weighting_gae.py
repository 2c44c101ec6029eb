"""TD errors / GAE / returns against plain-Python loops on random ragged masks, and the terminal reward."""

from __future__ import annotations

import pytest
import torch

from wmtp_core.weighting.gae import (
    discounted_cumsum,
    gae,
    state_values,
    td_errors,
    terminal_rewards,
    value_targets,
)


def _ragged(bsz: int, seqlen: int, seed: int, holes: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if holes:
        return torch.rand(bsz, seqlen, generator=gen) < 0.6
    mask = torch.zeros(bsz, seqlen, dtype=torch.bool)
    for b in range(bsz):
        start = int(torch.randint(0, seqlen, (1,), generator=gen))
        end = int(torch.randint(start, seqlen + 1, (1,), generator=gen))  # may be empty
        mask[b, start:end] = True
    return mask


def _reference(values, rewards, mask, gamma, lam):
    bsz, seqlen = values.shape
    delta = [[0.0] * seqlen for _ in range(bsz)]
    adv = [[0.0] * seqlen for _ in range(bsz)]
    for b in range(bsz):
        running = 0.0
        for t in reversed(range(seqlen)):
            if not mask[b][t]:
                running = 0.0
                continue
            cont = t + 1 < seqlen and bool(mask[b][t + 1])
            nxt = float(values[b][t + 1]) if cont else 0.0
            delta[b][t] = float(rewards[b][t]) + gamma * nxt - float(values[b][t])
            running = delta[b][t] + (gamma * lam * running if cont else 0.0)
            adv[b][t] = running
    return torch.tensor(delta, dtype=torch.float64), torch.tensor(adv, dtype=torch.float64)


@pytest.mark.parametrize("seqlen", [23, 64, 201])  # one block, exactly one, several blocks of the scan
@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_plain_loop(seed: int, holes: bool, seqlen: int) -> None:
    gen = torch.Generator().manual_seed(100 + seed)
    mask = _ragged(5, seqlen, seed, holes)
    values = torch.randn(5, seqlen, generator=gen, dtype=torch.float64)
    rewards = torch.randn(5, seqlen, generator=gen, dtype=torch.float64)
    ref_delta, ref_adv = _reference(values, rewards, mask, 0.99, 0.95)
    assert torch.allclose(td_errors(values, rewards, mask, 0.99), ref_delta, atol=1e-6, rtol=0)
    assert torch.allclose(gae(values, rewards, mask, 0.99, 0.95), ref_adv, atol=1e-6, rtol=0)
    v32, r32 = values.float(), rewards.float()
    assert torch.allclose(gae(v32, r32, mask, 0.99, 0.95).double(), ref_adv, atol=1e-5, rtol=0)
    _, ref_ret = _reference(torch.zeros_like(values), rewards, mask, 0.9, 1.0)
    assert torch.allclose(value_targets(rewards, mask, 0.9), ref_ret, atol=1e-6, rtol=0)


def test_terminal_reward_sits_on_last_response_token_and_enters_delta() -> None:
    mask = torch.tensor([[0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    rewards = terminal_rewards(torch.tensor([1.0, 0.0]), mask, correct=1.0, incorrect=-1.0)
    assert rewards.tolist() == [[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, -1]]
    values = torch.full((2, 6), 0.25)
    delta = td_errors(values, rewards, mask, 0.9)
    # at EOS the next value is terminal (0), so delta = reward - V
    assert delta[0, 3].item() == pytest.approx(1.0 - 0.25)
    assert delta[1, 5].item() == pytest.approx(-1.0 - 0.25)
    assert delta[0, 2].item() == pytest.approx(0.9 * 0.25 - 0.25)
    assert delta[0, 4].item() == 0.0 and delta[0, 0].item() == 0.0  # padding / prompt stay 0
    adv = gae(torch.zeros(2, 6), rewards, mask, 0.9, 1.0)
    assert adv[0, 1].item() == pytest.approx(0.81)  # reward propagates back through the episode


def test_value_targets_are_discounted_terminal_reward() -> None:
    mask = torch.tensor([[0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    rewards = terminal_rewards(torch.tensor([1.0]), mask)
    ret = value_targets(rewards, mask, 0.5)
    assert ret.tolist() == [[0.0, 0.125, 0.25, 0.5, 1.0, 0.0]]
    assert discounted_cumsum(torch.ones(1, 6), mask, 1.0).tolist() == [[0, 4, 3, 2, 1, 0]]


def test_state_values_shift_right() -> None:
    out = state_values(torch.tensor([[1.0, 2.0, 3.0]]))
    assert out.tolist() == [[0.0, 1.0, 2.0]]


def test_long_episode_crosses_scan_blocks() -> None:
    mask = torch.zeros(1, 300, dtype=torch.bool)
    mask[0, 5:290] = True
    rewards = terminal_rewards(torch.tensor([1.0]), mask)
    ret = value_targets(rewards, mask, 0.99)
    expected = torch.tensor([0.99 ** (289 - u) if 5 <= u < 290 else 0.0 for u in range(300)])
    assert torch.allclose(ret[0], expected, atol=1e-6)
    adv = gae(torch.zeros(1, 300), rewards, mask, 1.0, 0.99)
    assert adv[0, 5].item() == pytest.approx(0.99**284, rel=1e-4)  # ~0.058, carried through 5 blocks
