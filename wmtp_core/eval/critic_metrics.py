"""Does a critic carry token-level signal? AUROC, divergence points, classification and localisation scores.

AUROC(pos, neg) = P(score of a random positive > score of a random negative) + 0.5 P(tie), computed with the rank
formula (average ranks for ties): (sum of the positives' ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg). None when
a class is empty (undefined).

classification: positives = correct rows, score = the final-token value V(s_T) (the value of the state before
EOS, i.e. after the whole solution).
localisation: one row per incorrect row that shares a token prefix with a correct row of the same problem; the
first divergent response token u* (first position where the token ids differ, against the correct row with the
longest common prefix). Per row: AUROC of "TD error at u* is more negative than at the row's other target tokens"
(positive = u*, negatives = the others, score = -delta); the reported number is the mean over rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def auroc(pos: Sequence[float] | Tensor, neg: Sequence[float] | Tensor) -> float | None:
    """Rank-formula AUROC of scores `pos` (positives) against `neg` (negatives); ties count half; None if empty."""
    p = torch.as_tensor(pos, dtype=torch.float64).flatten()
    n = torch.as_tensor(neg, dtype=torch.float64).flatten()
    if p.numel() == 0 or n.numel() == 0:
        return None
    scores = torch.cat([p, n])
    order = torch.argsort(scores, stable=True)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    values, inverse = torch.unique(scores, return_inverse=True)  # average the ranks of tied scores
    sums = torch.zeros_like(values).index_add_(0, inverse, ranks)
    counts = torch.zeros_like(values).index_add_(0, inverse, torch.ones_like(ranks))
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = p.numel(), n.numel()
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int:
    """Index of the first position where a and b differ (len of the shorter one when one is a prefix)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def divergence_points(responses: Sequence[Sequence[int]], is_correct: Sequence[bool],
                      task_ids: Sequence[str]) -> dict[int, int]:
    """{row index of an incorrect row: index into its response ids of the first divergent token} for every incorrect
    row whose longest common prefix with a correct row of the same task is >= 1 token and ends before its last
    token (the EOS; a row equal to a correct one up to EOS has no divergent code token)."""
    correct_by_task: dict[str, list[int]] = {}
    for i, (ok, task) in enumerate(zip(is_correct, task_ids, strict=True)):
        if ok:
            correct_by_task.setdefault(task, []).append(i)
    out = {}
    for i, (ok, task) in enumerate(zip(is_correct, task_ids, strict=True)):
        if ok or task not in correct_by_task:
            continue
        d = max(first_divergence(responses[i], responses[j]) for j in correct_by_task[task])
        if 1 <= d < len(responses[i]) - 1:
            out[i] = d
    return out


def classification_auroc(final_values: Tensor, is_correct: Tensor) -> float | None:
    """AUROC of the final-token value, correct rows as positives."""
    ok = is_correct.bool()
    return auroc(final_values[ok], final_values[~ok])


def localisation_auroc(td: Tensor, mask: Tensor, divergent: dict[int, int]) -> float | None:
    """Mean over rows b of AUROC(-td[b, u*], -td[b, other target tokens]); divergent: {row: target position u*}.
    None without rows."""
    scores = []
    for b, u in divergent.items():
        others = mask[b].clone()
        others[u] = False
        value = auroc(-td[b, u : u + 1], -td[b][others])
        if value is not None:
            scores.append(value)
    return sum(scores) / len(scores) if scores else None
