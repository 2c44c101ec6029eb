"""AUROC (rank formula) against a brute-force pairwise count (and sklearn when installed); divergence points and
the localisation score against plain loops."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from wmtp_core.eval.critic_metrics import (
    auroc,
    classification_auroc,
    divergence_points,
    first_divergence,
    localisation_auroc,
)


def _pairwise(pos: list[float], neg: list[float]) -> float:
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_pairwise_count_with_ties(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, 6, (23,), generator=gen).float().tolist()  # many ties
    neg = torch.randint(0, 5, (17,), generator=gen).float().tolist()
    assert auroc(pos, neg) == pytest.approx(_pairwise(pos, neg), abs=1e-12)
    assert auroc([1.0], []) is None and auroc([], [1.0]) is None
    assert auroc([2.0, 3.0], [1.0]) == 1.0 and auroc([1.0], [1.0, 1.0]) == 0.5


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="sklearn not installed")
def test_auroc_matches_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    gen = torch.Generator().manual_seed(5)
    pos, neg = torch.randn(40, generator=gen).round(decimals=1), torch.randn(31, generator=gen).round(decimals=1) - 0.3
    labels = [1] * 40 + [0] * 31
    assert auroc(pos, neg) == pytest.approx(roc_auc_score(labels, torch.cat([pos, neg]).tolist()), abs=1e-12)


def test_divergence_points() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2 and first_divergence([1, 2], [1, 2, 3]) == 2
    responses = [[5, 6, 7, 8, 2], [5, 6, 9, 8, 2], [5, 6, 7, 8, 2], [4, 6, 7, 8, 2], [1, 1, 1, 2], [5, 6, 7, 8, 2]]
    correct = [True, False, False, False, False, True]
    tasks = ["a", "a", "a", "a", "b", "b"]
    # row 1 diverges at 2; row 2 equals the correct row up to EOS (no divergent code token); row 3 diverges at 0
    # (no shared prefix); row 4 has no correct row of its task
    assert divergence_points(responses, correct, tasks) == {1: 2}


def test_classification_and_localisation_scores_match_loops() -> None:
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(12, generator=gen)
    ok = torch.rand(12, generator=gen) < 0.5
    expected = _pairwise(values[ok].tolist(), values[~ok].tolist())
    assert classification_auroc(values, ok) == pytest.approx(expected)
    td = torch.randn(4, 20, generator=gen)
    mask = torch.zeros(4, 20, dtype=torch.bool)
    mask[:, 5:18] = True
    divergent = {0: 7, 2: 11}
    per_row = []
    for b, u in divergent.items():
        others = [-float(td[b, v]) for v in range(20) if mask[b, v] and v != u]
        per_row.append(_pairwise([-float(td[b, u])], others))
    assert localisation_auroc(td, mask, divergent) == pytest.approx(sum(per_row) / 2)
    assert localisation_auroc(td, mask, {}) is None
