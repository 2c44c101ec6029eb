"""The comparison statistics against independent references: hand-computed bootstrap distributions, a plain-loop
bootstrap, the normal approximation, and the degenerate (all zeros) and strong-effect cases."""

from __future__ import annotations

import numpy as np
import pytest

from wmtp_core.eval.compare import (
    Interval,
    RunOutcome,
    bootstrap_replicates,
    common_problems,
    compare_scores,
    comparison_rows,
    run_seeds,
    verdict,
)

PASS, DIFF, VERDICT = "pass@1 [95% CI]", "Δpass@1 vs baseline [95% CI]", "Δpass@1 verdict"


def _run(experiment: str, passed: list[bool], seed: int | None = None, **kw) -> RunOutcome:
    return RunOutcome(experiment, seed, {f"p{i:03d}": (1, int(p)) for i, p in enumerate(passed)}, **kw)


def test_two_problems_hand_computed() -> None:
    # scores [0, 1]: a replicate's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4 -> percentile CI [0, 1]
    reps = bootstrap_replicates({"a": np.array([[0.0, 1.0]])}, n_boot=20_000, seed=3)["a"]
    assert set(np.unique(reps)) == {0.0, 0.5, 1.0}
    assert np.mean(reps == 0.5) == pytest.approx(0.5, abs=0.02)
    assert np.mean(reps == 0.0) == pytest.approx(0.25, abs=0.02)
    score = compare_scores({"a": np.array([[0.0, 1.0]])}, n_boot=20_000).score["a"]
    assert (score.estimate, score.low, score.high) == (0.5, 0.0, 1.0)


def test_one_extra_solved_problem_in_ten_is_not_significant_hand_computed() -> None:
    # paired: the two experiments differ on one problem of 10, so a replicate's difference is X/10 with
    # X ~ Binomial(10, 1/10): P(X=0) = 0.349 > 2.5 %, P(X<=2) = 0.930, P(X<=3) = 0.987 -> CI [0, 0.3]
    base = np.array([[1, 1, 0, 0, 0, 0, 1, 0, 0, 0]], dtype=float)
    better = base.copy()
    better[0, 2] = 1.0
    diff = compare_scores({"baseline": base, "x": better}, n_boot=20_000, seed=1).diff["x"]
    assert (diff.estimate, diff.low, diff.high) == pytest.approx((0.1, 0.0, 0.3))
    assert verdict(diff) == "not significant"


def _loop_bootstrap(matrices: dict[str, np.ndarray], n_boot: int, seed: int) -> dict[str, list[float]]:
    """Plain loops over the documented draw order (module docstring of wmtp_core.eval.compare)."""
    rng = np.random.default_rng(seed)
    n_problems = next(iter(matrices.values())).shape[1]
    problems = rng.integers(0, n_problems, size=(n_boot, n_problems))
    out = {}
    for name, matrix in matrices.items():
        seeds = rng.integers(0, matrix.shape[0], size=(n_boot, matrix.shape[0]))
        values = []
        for b in range(n_boot):
            total = 0.0
            for s in seeds[b]:
                total += sum(matrix[s, p] for p in problems[b]) / n_problems
            values.append(total / matrix.shape[0])
        out[name] = values
    return out


def test_matches_a_plain_loop_bootstrap() -> None:
    rng = np.random.default_rng(11)
    matrices = {"baseline": rng.random((3, 7)), "x": rng.random((2, 7)), "y": (rng.random((1, 7)) > 0.5) * 1.0}
    got = bootstrap_replicates(matrices, n_boot=300, seed=5)
    ref = _loop_bootstrap(matrices, n_boot=300, seed=5)
    for name in matrices:
        np.testing.assert_allclose(got[name], ref[name], atol=1e-12)


def test_problem_bootstrap_ci_matches_the_normal_approximation() -> None:
    scores = (np.random.default_rng(0).random(400) < 0.3).astype(float)
    ci = compare_scores({"a": scores[None, :]}, n_boot=20_000).score["a"]
    half = 1.96 * scores.std() / np.sqrt(len(scores))
    assert ci.estimate == pytest.approx(scores.mean())
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.08)


def test_seeds_are_resampled_too() -> None:
    # seed 0 solves everything, seed 1 nothing: the seed draw alone gives means 1, 0.5, 0 w.p. 1/4, 1/2, 1/4
    matrix = np.vstack([np.ones(30), np.zeros(30)])
    ci = compare_scores({"a": matrix}, n_boot=20_000).score["a"]
    assert (ci.estimate, ci.low, ci.high) == (0.5, 0.0, 1.0)


def test_all_zeros_is_not_significant_not_a_bare_zero() -> None:
    rows = comparison_rows([_run("baseline", [False] * 4), _run("verifiable", [False] * 4),
                            _run("rho1", [False] * 4)], n_boot=2000)
    assert [r["experiment"] for r in rows] == ["baseline", "verifiable", "rho1"]
    assert rows[0][PASS] == "0.000 [0.000, 0.000]" and rows[0][VERDICT] == "(reference)"
    for row in rows[1:]:
        assert row[DIFF] == "+0.000 [+0.000, +0.000]"
        assert row[VERDICT] == "not significant"


def test_strong_effect_is_significant_both_ways() -> None:
    base = [i < 5 for i in range(50)]
    strong = [i < 45 for i in range(50)]
    one_less = [i < 4 for i in range(50)]
    rows = comparison_rows([_run("baseline", base), _run("verifiable", strong), _run("rho1", one_less)],
                           n_boot=2000)
    assert rows[1][VERDICT] == "better (significant)" and rows[1][DIFF].startswith("+0.800 [")
    # rho1 misses one baseline problem of 50: a replicate draws it 0 times with probability (49/50)^50 = 0.36
    assert rows[2][VERDICT] == "not significant" and rows[2][DIFF].startswith("-0.020 [")
    worse = comparison_rows([_run("baseline", strong), _run("rho1", base)], n_boot=2000)
    assert worse[1][VERDICT] == "worse (significant)"


def test_interval_and_verdict_edges() -> None:
    assert verdict(Interval(0.0, 0.0, 0.0)) == "not significant"
    assert verdict(Interval(0.1, 0.0, 0.2)) == "not significant"
    assert verdict(Interval(0.1, 0.01, 0.2)) == "better (significant)"


def test_seeds_pool_per_experiment_and_label_the_row() -> None:
    runs = [_run("baseline", [True, False], seed=0), _run("baseline", [False, False], seed=1),
            _run("rho1", [True, True], seed=0), _run("rho1", [True, False], seed=1)]
    rows = comparison_rows(runs, n_boot=500)
    assert rows[0]["seeds"] == "2 (0,1)" and rows[0][PASS].startswith("0.250 [")
    assert rows[1][PASS].startswith("0.750 [") and rows[1][DIFF].startswith("+0.500 [")


def test_weights_and_critic_columns_and_na() -> None:
    weights = {"weight_entropy": 3.5, "weight_ess": 0.8, "weight_last10_share": None}
    critic = {"classification_auroc": {"critic": 0.75, "constant_critic": 0.5, "position_matched": None},
              "localisation_auroc": {"critic": None, "constant_critic": None, "position_matched": None}}
    rows = comparison_rows([_run("baseline", [True]), _run("verifiable", [True], weights=weights, critic=critic)],
                           n_boot=100)
    assert rows[0]["weight entropy (1=uniform)"] == "n/a" and rows[0]["critic cls AUROC (critic/const/pos)"] == "n/a"
    assert rows[1]["weight entropy (1=uniform)"] == "3.500" and rows[1]["weight ESS/N"] == "0.800"
    assert rows[1]["last-10 weight share"] == "n/a"
    assert rows[1]["critic cls AUROC (critic/const/pos)"] == "0.750/0.500/n/a"
    assert rows[1]["critic loc AUROC (critic/const/pos)"] == "n/a/n/a/n/a"


def test_missing_baseline_and_unevaluated_runs() -> None:
    rows = comparison_rows([_run("rho1", [True, False]), RunOutcome("verifiable", None, None)], n_boot=100)
    assert rows[0][VERDICT] == "no baseline run to compare with"
    assert rows[1]["problems"] == "not evaluated" and rows[1][PASS] == "not evaluated"


def test_different_problem_sets_are_refused() -> None:
    with pytest.raises(ValueError, match=r"rho1 \(seed 1\) evaluated problems"):
        common_problems([_run("baseline", [True, False]), _run("rho1", [True], seed=1)])


def test_run_seeds() -> None:
    assert run_seeds(1) == [None] and run_seeds(3) == [0, 1, 2]
    with pytest.raises(ValueError, match="at least 1"):
        run_seeds(0)
