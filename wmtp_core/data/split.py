"""Seeded train/validation/test splits by round, and the small sets.

The split unit is a round (the `<round>` of `<round>_<letter>`), widened to a group of rounds that share an
identical problem statement: Codeforces runs Div. 1 and Div. 2 in parallel under different contest ids with
the same problems, so those rounds must land in the same split. Eval-only sources (HumanEval) go to test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from wmtp_core.data.schema import round_of

SPLITS = ("train", "validation", "test")
SMALL = {"train_small": ("train", 100), "validation_small": ("validation", 32)}
EVAL_ONLY_SOURCES = frozenset({"humaneval"})


@dataclass(frozen=True)
class SplitConfig:
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or abs(sum(self.ratios) - 1.0) > 1e-6:
            raise ValueError(f"ratios: expected 3 non-negative numbers summing to 1, got {self.ratios}")


def _find(parent: dict[str, str], x: str) -> str:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def round_groups(rows: list[dict]) -> dict[str, str]:
    """round -> group key (the smallest round of its group); rounds sharing an instruction are joined."""
    parent: dict[str, str] = {}
    by_text: dict[str, str] = {}
    for row in rows:
        r = round_of(row["task_id"])
        parent.setdefault(r, r)
        other = by_text.setdefault(row["instruction"], r)
        a, b = _find(parent, r), _find(parent, other)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {r: _find(parent, r) for r in parent}


def _cut(n: int, ratios: tuple[float, float, float]) -> tuple[int, int]:
    first = round(n * ratios[0])
    second = round(n * (ratios[0] + ratios[1]))
    return first, max(first, second)


def assign_splits(rows: list[dict], source: str, cfg: SplitConfig) -> list[str]:
    """Split name per row; every row of a group gets the same split."""
    groups = round_groups(rows)
    if source in EVAL_ONLY_SOURCES:
        return ["test"] * len(rows)
    keys = sorted(set(groups.values()))
    random.Random(f"{cfg.seed}:{source}").shuffle(keys)
    a, b = _cut(len(keys), cfg.ratios)
    split_of = {k: SPLITS[0] if i < a else SPLITS[1] if i < b else SPLITS[2] for i, k in enumerate(keys)}
    return [split_of[groups[round_of(row["task_id"])]] for row in rows]


def small_groups(rows: list[dict], splits: list[str], split: str, cap: int, seed: int) -> set[str]:
    """Groups of `split` taken in a seeded order while the correct rows stay <= cap (whole groups only)."""
    groups = round_groups(rows)
    sizes: dict[str, int] = {}
    for row, s in zip(rows, splits):
        if s == split and row["is_correct"]:
            g = groups[round_of(row["task_id"])]
            sizes[g] = sizes.get(g, 0) + 1
    order = sorted(sizes)
    random.Random(f"{seed}:{split}:small").shuffle(order)
    chosen: set[str] = set()
    total = 0
    for g in order:
        if total + sizes[g] <= cap:
            chosen.add(g)
            total += sizes[g]
    return chosen


@dataclass(frozen=True)
class Placement:
    """Where the kept source rows went; extra rows (raw_extra/) join the group of their problem.

    An extra row belongs to the group of its task_id's round, else to the group whose statement (instruction)
    it repeats (a parallel Div. 1/Div. 2 round whose own row was a duplicate); it never opens a new group, so
    adding extra rows cannot move any source row to another split."""

    split_of_group: dict[str, str]
    group_of_round: dict[str, str]
    group_of_text: dict[str, str]

    @classmethod
    def of(cls, rows: list[dict], splits: list[str]) -> Placement:
        groups = round_groups(rows)
        split_of_group = {groups[round_of(r["task_id"])]: s for r, s in zip(rows, splits)}
        group_of_text = {r["instruction"]: groups[round_of(r["task_id"])] for r in rows}
        return cls(split_of_group, groups, group_of_text)

    def group_for(self, row: dict) -> tuple[str | None, str]:
        """(group key, "") or (None, reason) for an extra row."""
        rnd = round_of(row["task_id"])
        by_round, by_text = self.group_of_round.get(rnd), self.group_of_text.get(row["instruction"])
        if by_round and by_text and by_round != by_text:
            return None, (
                f"round {rnd!r} is in {self.split_of_group[by_round]} but the statement is that of round "
                f"{by_text!r} in {self.split_of_group[by_text]} (would leak between groups)"
            )
        group = by_round or by_text
        if group is None:
            return (
                None,
                f"round {rnd!r} matches no kept problem of this source (extra rows follow their problem)",
            )
        return group, ""

    def split_for(self, group: str) -> str:
        return self.split_of_group[group]


def round_robin_order(task_ids: list[str]) -> list[int]:
    """Indices ordered by (occurrence number of the row's task_id, position): every task's first row comes
    before any task's second row, so a capped prefix covers as many problems as possible."""
    seen: dict[str, int] = {}
    ranks = []
    for tid in task_ids:
        ranks.append(seen.get(tid, 0))
        seen[tid] = ranks[-1] + 1
    return sorted(range(len(task_ids)), key=lambda i: (ranks[i], i))
