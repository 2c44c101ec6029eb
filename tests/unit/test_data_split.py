"""Round-grouped seeded splits: no round or shared statement in two splits; small sets inside their split."""

from __future__ import annotations

import pytest
from fixtures.data import raw_row

from wmtp_core.data.schema import round_of
from wmtp_core.data.split import SplitConfig, assign_splits, round_groups, small_groups


def _rows() -> list[dict]:
    rows = []
    for contest in range(100, 160):
        for letter in "ABC":
            rows.append(raw_row(task_id=f"{contest}_{letter}", instruction=f"problem {contest}{letter}"))
    # A parallel Div. 1 round (200) reuses the statements of round 100; 201 reuses 101's B.
    rows += [
        raw_row(task_id="200_A", instruction="problem 100A"),
        raw_row(task_id="201_C", instruction="problem 101B"),
    ]
    rows += [
        raw_row(task_id=f"{c}_A", instruction=f"problem {c}A", is_correct=False) for c in range(100, 110)
    ]
    return rows


def test_no_round_in_two_splits_and_shared_statements_stay_together() -> None:
    rows = _rows()
    splits = assign_splits(rows, "codecontests", SplitConfig((0.6, 0.2, 0.2), seed=3))
    split_of_round: dict[str, set[str]] = {}
    for row, s in zip(rows, splits):
        split_of_round.setdefault(round_of(row["task_id"]), set()).add(s)
    assert all(len(v) == 1 for v in split_of_round.values())
    assert split_of_round["200"] == split_of_round["100"]
    assert split_of_round["201"] == split_of_round["101"]
    assert set(splits) == {"train", "validation", "test"}


def test_groups_join_rounds_sharing_a_statement() -> None:
    groups = round_groups(_rows())
    assert groups["200"] == groups["100"] == "100"
    assert groups["201"] == groups["101"]
    assert groups["102"] == "102"


def test_splits_are_seeded_and_follow_ratios() -> None:
    rows = _rows()
    a = assign_splits(rows, "codecontests", SplitConfig((0.8, 0.1, 0.1), seed=1))
    assert a == assign_splits(rows, "codecontests", SplitConfig((0.8, 0.1, 0.1), seed=1))
    assert a != assign_splits(rows, "codecontests", SplitConfig((0.8, 0.1, 0.1), seed=2))
    n_rounds = {s: len({round_of(r["task_id"]) for r, x in zip(rows, a) if x == s}) for s in set(a)}
    assert n_rounds["validation"] in (5, 6, 7) and n_rounds["test"] in (5, 6, 7)  # 60 groups, 10% each


def test_eval_only_source_goes_to_test() -> None:
    rows = [raw_row(task_id=f"humaneval-{i}_A", instruction=f"p{i}") for i in range(5)]
    assert assign_splits(rows, "humaneval", SplitConfig()) == ["test"] * 5


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.9, 0.2, 0.1), (1.2, -0.1, -0.1)])
def test_bad_ratios_are_rejected(ratios) -> None:
    with pytest.raises(ValueError, match="ratios"):
        SplitConfig(ratios)


def test_small_groups_whole_groups_under_cap() -> None:
    rows = _rows()
    splits = assign_splits(rows, "codecontests", SplitConfig((0.8, 0.1, 0.1), seed=0))
    groups = round_groups(rows)
    chosen = small_groups(rows, splits, "train", cap=20, seed=0)
    picked = [r for r, s in zip(rows, splits) if s == "train" and groups[round_of(r["task_id"])] in chosen]
    assert 0 < sum(r["is_correct"] for r in picked) <= 20
    assert all(s == "train" for r, s in zip(rows, splits) if groups[round_of(r["task_id"])] in chosen)
    assert chosen == small_groups(rows, splits, "train", cap=20, seed=0)
