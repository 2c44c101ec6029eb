"""Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), computed as a stable product."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) passes."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


def mean_pass_at_k(counts: Iterable[tuple[int, int]], ks: Sequence[int]) -> dict[str, float]:
    """{"pass@k": mean over problems} for each k no larger than every problem's n."""
    counts = list(counts)
    if not counts:
        return {}
    smallest_n = min(n for n, _ in counts)
    return {f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
            for k in ks if k <= smallest_n}


def pass_counts(results: Iterable[dict]) -> dict[str, tuple[int, int]]:
    """Per problem (task_id) from scored sample rows (results.jsonl): (samples, samples that passed)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in results:
        counts[row["task_id"]][0] += 1
        counts[row["task_id"]][1] += int(row["passed"])
    return {k: (n, c) for k, (n, c) in counts.items()}
