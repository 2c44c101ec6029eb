"""Comparing experiments: pass@k with a bootstrap 95 % CI, the paired difference to Baseline, and a verdict.

Pure and seeded (numpy only; no files, no clock): the same inputs and seed give the same table.

Statistics (one spelling for the whole project):
- Per problem and run, the unbiased pass@k of its n samples (`wmtp_core.eval.passk.pass_at_k`).
- Point estimate of an experiment: the mean over its seeds of the mean over problems.
- Bootstrap (percentile, `N_BOOT` replicates, seed `BOOT_SEED`): a replicate draws the problems with replacement
  ONCE and uses that draw for every experiment, so each difference to Baseline is paired (the same problems on
  both sides). With several seeds it also draws each experiment's seeds with replacement (independently per
  experiment: a training seed is not a shared unit across experiments), i.e. a two-level (hierarchical)
  bootstrap, so the CI covers training-seed variation as well as the finite problem set. With one seed this is
  the plain problem bootstrap.
- Verdict on a difference: "not significant" when its 95 % CI contains 0, else "better"/"worse (significant)".
  All-zero outcomes (random weights) give the CI [0, 0]: "not significant", never a bare 0.

Draw order (a reference implementation can reproduce it): `rng = numpy.random.default_rng(seed)`; problems
`rng.integers(0, P, size=(n_boot, P))`; then, for each experiment in table order, seeds
`rng.integers(0, S, size=(n_boot, S))`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wmtp_core.eval.passk import pass_at_k

CONFIDENCE = 0.95
N_BOOT = 10_000
BOOT_SEED = 0
BASELINE = "baseline"
WEIGHT_METRICS = ("weight_entropy", "weight_ess", "weight_last10_share")
WEIGHT_LABELS = {"weight_entropy": "weight entropy (1=uniform)", "weight_ess": "weight ESS/N",
                 "weight_last10_share": "last-10 weight share"}
CRITIC_CONTROLS = ("critic", "constant_critic", "position_matched")
CRITIC_SECTIONS = {"classification_auroc": "critic cls AUROC", "localisation_auroc": "critic loc AUROC"}
NOT_AVAILABLE = "n/a"


@dataclass(frozen=True)
class RunOutcome:
    """One experiment under one seed, as read from its files.

    counts   task_id -> (samples, samples that passed), from the eval results; None when not evaluated.
    weights  Stage 2 weight statistic -> its mean over steps (None: the run logged none).
    critic   CRITIC_SECTIONS key -> {control: AUROC or None}; None when the run has no critic report."""

    experiment: str
    seed: int | None
    counts: dict[str, tuple[int, int]] | None
    weights: dict[str, float | None] = field(default_factory=dict)
    critic: dict[str, dict[str, float | None]] | None = None


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def percentile_interval(estimate: float, replicates: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return Interval(float(estimate), float(low), float(high))


def verdict(diff: Interval) -> str:
    if diff.contains_zero():
        return "not significant"
    return "better (significant)" if diff.low > 0 else "worse (significant)"


def score_matrix(per_seed: Sequence[dict[str, float]], task_ids: Sequence[str]) -> np.ndarray:
    """[seeds, problems] array of per-problem scores, problems in `task_ids` order."""
    return np.array([[scores[t] for t in task_ids] for scores in per_seed], dtype=np.float64)


def _draw_counts(rng: np.random.Generator, size: int, n_boot: int) -> np.ndarray:
    """[n_boot, size]: how often each index was drawn in each replicate (size draws with replacement)."""
    draws = rng.integers(0, size, size=(n_boot, size))
    flat = (np.arange(n_boot)[:, None] * size + draws).ravel()
    return np.bincount(flat, minlength=n_boot * size).reshape(n_boot, size).astype(np.float64)


def bootstrap_replicates(matrices: dict[str, np.ndarray], n_boot: int = N_BOOT,
                         seed: int = BOOT_SEED) -> dict[str, np.ndarray]:
    """Per experiment, `n_boot` bootstrap replicates of its mean score (problems drawn once for all experiments,
    seeds per experiment; see the module docstring). Every matrix is [seeds, problems] over the same problems."""
    sizes = {m.shape[1] for m in matrices.values()}
    if len(sizes) != 1:
        raise ValueError(f"bootstrap: experiments cover different numbers of problems {sorted(sizes)}")
    (n_problems,) = sizes
    if n_problems == 0 or n_boot < 1:
        raise ValueError(f"bootstrap: needs at least one problem and one replicate (got {n_problems}, {n_boot})")
    rng = np.random.default_rng(seed)
    problem_counts = _draw_counts(rng, n_problems, n_boot)  # [B, P]
    out = {}
    for name, matrix in matrices.items():
        per_seed = problem_counts @ matrix.T / n_problems  # [B, S]: each seed's mean over the drawn problems
        seed_counts = _draw_counts(rng, matrix.shape[0], n_boot)  # [B, S]
        out[name] = (seed_counts * per_seed).sum(axis=1) / matrix.shape[0]
    return out


@dataclass(frozen=True)
class Comparison:
    """pass@k of every experiment and its paired difference to the baseline (None for the baseline itself or
    when no baseline was run)."""

    score: dict[str, Interval]
    diff: dict[str, Interval | None]


def compare_scores(matrices: dict[str, np.ndarray], baseline: str = BASELINE, n_boot: int = N_BOOT,
                   seed: int = BOOT_SEED) -> Comparison:
    reps = bootstrap_replicates(matrices, n_boot, seed)
    point = {name: float(m.mean(axis=1).mean()) for name, m in matrices.items()}
    score = {name: percentile_interval(point[name], reps[name]) for name in matrices}
    diff: dict[str, Interval | None] = {}
    for name in matrices:
        if name == baseline or baseline not in matrices:
            diff[name] = None
        else:
            diff[name] = percentile_interval(point[name] - point[baseline], reps[name] - reps[baseline])
    return Comparison(score, diff)


def run_seeds(seeds: int) -> list[int | None]:
    """The training seeds of a `seeds`-seed comparison: 1 keeps the config's seed (None); N > 1 runs 0..N-1."""
    if seeds < 1:
        raise ValueError(f"seeds: expected at least 1, got {seeds}")
    return [None] if seeds == 1 else list(range(seeds))


# --- table -----------------------------------------------------------------------------------------------------

def common_problems(runs: Sequence[RunOutcome]) -> list[str]:
    """The problems every evaluated run scored; a paired comparison needs exactly the same set everywhere."""
    evaluated = [r for r in runs if r.counts is not None]
    if not evaluated:
        return []
    first = set(evaluated[0].counts)
    for run in evaluated[1:]:
        if set(run.counts) != first:
            raise ValueError(f"compare: {_label(run)} evaluated problems {sorted(set(run.counts) ^ first)[:5]} "
                             f"that {_label(evaluated[0])} did not (or the reverse); run every experiment on the "
                             "same eval dataset and limit")
    return sorted(first)


def _label(run: RunOutcome) -> str:
    return run.experiment if run.seed is None else f"{run.experiment} (seed {run.seed})"


def comparable_ks(runs: Sequence[RunOutcome], ks: Sequence[int]) -> list[int]:
    """The ks every problem of every evaluated run has enough samples for."""
    smallest = min((n for r in runs if r.counts for n, _ in r.counts.values()), default=0)
    return [k for k in ks if 1 <= k <= smallest]


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return NOT_AVAILABLE
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _interval_text(iv: Interval, signed: bool = False) -> str:
    return f"{_fmt(iv.estimate, signed)} [{_fmt(iv.low, signed)}, {_fmt(iv.high, signed)}]"


def _mean_over_seeds(values: Sequence[float | None]) -> float | None:
    """Mean over seeds; None (n/a) unless every seed has the value."""
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def _critic_text(runs: Sequence[RunOutcome], section: str) -> str:
    reports = [r.critic for r in runs]
    if any(rep is None for rep in reports):
        return NOT_AVAILABLE
    return "/".join(_fmt(_mean_over_seeds([rep[section].get(c) for rep in reports])) for c in CRITIC_CONTROLS)


def _seeds_text(runs: Sequence[RunOutcome]) -> str:
    seeds = [r.seed for r in runs]
    return "config" if seeds == [None] else f"{len(seeds)} ({','.join('config' if s is None else str(s) for s in seeds)})"


def comparison_rows(runs: Sequence[RunOutcome], ks: Sequence[int] = (1,), baseline: str = BASELINE,
                    n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> list[dict[str, str]]:
    """One row per experiment (its seeds pooled), in order of first appearance: pass@k [95 % CI], the paired
    difference to `baseline` [95 % CI] with its verdict, the Stage 2 weight statistics and the critic report."""
    by_exp: dict[str, list[RunOutcome]] = {}
    for run in runs:
        by_exp.setdefault(run.experiment, []).append(run)
    tasks = common_problems(runs)
    evaluated = {e: rs for e, rs in by_exp.items() if tasks and all(r.counts is not None for r in rs)}
    usable_ks = comparable_ks([r for rs in evaluated.values() for r in rs], ks)
    comparisons = {k: compare_scores({e: score_matrix([{t: pass_at_k(*r.counts[t], k) for t in tasks} for r in rs],
                                                      tasks) for e, rs in evaluated.items()}, baseline, n_boot, seed)
                   for k in usable_ks} if evaluated else {}
    rows = []
    for exp, exp_runs in by_exp.items():
        row = {"experiment": exp, "seeds": _seeds_text(exp_runs),
               "problems": str(len(tasks)) if exp in evaluated else "not evaluated"}
        for k in usable_ks:
            row |= _score_cells(k, exp, comparisons[k], baseline)
        for name in WEIGHT_METRICS:
            row[WEIGHT_LABELS[name]] = _fmt(_mean_over_seeds([r.weights.get(name) for r in exp_runs]))
        for section, label in CRITIC_SECTIONS.items():
            row[f"{label} (critic/const/pos)"] = _critic_text(exp_runs, section)
        rows.append(row)
    return rows


def _score_cells(k: int, exp: str, comparison: Comparison, baseline: str) -> dict[str, str]:
    name = f"pass@{k}"
    if exp not in comparison.score:
        return {f"{name} [95% CI]": "not evaluated", f"Δ{name} vs {baseline} [95% CI]": NOT_AVAILABLE,
                f"Δ{name} verdict": NOT_AVAILABLE}
    diff = comparison.diff[exp]
    if exp == baseline:
        diff_text, verdict_text = "(reference)", "(reference)"
    elif diff is None:
        diff_text, verdict_text = NOT_AVAILABLE, f"no {baseline} run to compare with"
    else:
        diff_text, verdict_text = _interval_text(diff, signed=True), verdict(diff)
    return {f"{name} [95% CI]": _interval_text(comparison.score[exp]),
            f"Δ{name} vs {baseline} [95% CI]": diff_text, f"Δ{name} verdict": verdict_text}
