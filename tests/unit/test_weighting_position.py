"""Distance-to-EOS maths, the position-matched control and the weight summaries against plain loops."""

from __future__ import annotations

import math

import pytest
import torch

from tests.fixtures.models import assert_close
from wmtp_core.weighting.ablation import ablate_weights
from wmtp_core.weighting.position import (
    distance_to_last,
    position_matched,
    profile_means,
    profile_metrics,
    profile_sums,
    weight_summary,
)


def _case(bsz: int = 6, seqlen: int = 90, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows with a prompt: response = a contiguous run of True ending before the padding."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(bsz, seqlen, dtype=torch.bool)
    for b in range(bsz):
        end = int(torch.randint(seqlen // 2, seqlen + 1, (1,), generator=gen))
        start = int(torch.randint(1, end - 2, (1,), generator=gen))
        mask[b, start:end] = True
    w = torch.rand(bsz, seqlen, generator=gen) * 3 * mask
    return w, mask


def _loop_distances(mask: torch.Tensor) -> dict[tuple[int, int], int]:
    out = {}
    for b in range(mask.shape[0]):
        valid = [u for u in range(mask.shape[1]) if mask[b, u]]
        for rank, u in enumerate(valid):
            out[(b, u)] = len(valid) - 1 - rank
    return out


def test_distance_to_last_matches_loop() -> None:
    _, mask = _case()
    d = distance_to_last(mask)
    expected = _loop_distances(mask)
    for b in range(mask.shape[0]):
        for u in range(mask.shape[1]):
            assert int(d[b, u]) == expected.get((b, u), -1)


def test_position_matched_keeps_every_bucket_multiset_and_is_seeded() -> None:
    w, mask = _case()
    out = position_matched(w, mask, torch.Generator().manual_seed(1), cap=16)
    dist = _loop_distances(mask)
    assert (out[~mask] == 0).all()
    for bucket in range(17):
        cells = [(b, u) for (b, u), d in dist.items() if min(d, 16) == bucket]
        before = sorted(float(w[c]) for c in cells)
        after = sorted(float(out[c]) for c in cells)
        assert before == after, f"bucket {bucket}"
    assert not torch.equal(out, w)  # rows exchange weights at equal distance
    again = position_matched(w, mask, torch.Generator().manual_seed(1), cap=16)
    other = position_matched(w, mask, torch.Generator().manual_seed(2), cap=16)
    assert torch.equal(out, again) and not torch.equal(out, other)
    # the profile (mean per bucket) is kept exactly; it is also what ablate_weights' mode does
    s0, c0 = profile_sums(w, mask, cap=16)
    s1, c1 = profile_sums(out, mask, cap=16)
    assert torch.equal(c0, c1)
    assert_close(s1, s0, atol=1e-9)
    assert torch.equal(ablate_weights(w, mask, "position_matched", torch.Generator().manual_seed(3)),
                       position_matched(w, mask, torch.Generator().manual_seed(3)))


def test_profile_matches_loop() -> None:
    w, mask = _case()
    sums, counts = profile_sums(w, mask, cap=20)
    acc: dict[int, list[float]] = {}
    for (b, u), d in _loop_distances(mask).items():
        acc.setdefault(min(d, 20), []).append(float(w[b, u]))
    means = profile_means(sums, counts)
    for bucket in range(21):
        if bucket in acc:
            assert means[bucket] == pytest.approx(sum(acc[bucket]) / len(acc[bucket]), rel=1e-9)
        else:
            assert means[bucket] is None
    names = profile_metrics(sums, counts)
    assert "weight_profile/d00" in names and "weight_profile/d20plus" in names


def test_weight_summary_matches_loop() -> None:
    w, mask = _case()
    vals = [float(w[b, u]) for b in range(w.shape[0]) for u in range(w.shape[1]) if mask[b, u]]
    n, total = len(vals), sum(vals)
    entropy = -sum(v / total * math.log(v / total) for v in vals if v > 0) / math.log(n)
    ess = total**2 / (n * sum(v * v for v in vals))
    near = sum(float(w[b, u]) for (b, u), d in _loop_distances(mask).items() if d < 10) / total
    got = weight_summary(w, mask)
    assert float(got["weight_entropy"]) == pytest.approx(entropy, rel=1e-5)
    assert float(got["weight_ess"]) == pytest.approx(ess, rel=1e-5)
    assert float(got["weight_last10_share"]) == pytest.approx(near, rel=1e-5)
    uniform = weight_summary(mask.float(), mask)
    assert float(uniform["weight_entropy"]) == pytest.approx(1.0, abs=1e-6)
    assert float(uniform["weight_ess"]) == pytest.approx(1.0, abs=1e-6)
