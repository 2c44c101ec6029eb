"""The shipped verified negatives (`storage/datasets/<source>/raw_extra/negatives.jsonl`) are valid raw rows
of known problems, all incorrect, and `prepare-data` on the shipped data gives Stage 1 both classes in the small
sets (with no split leakage)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wmtp_core import paths
from wmtp_core.data.layout import SourceLayout
from wmtp_core.data.pipeline import prepare_source
from wmtp_core.data.prepare import Budget
from wmtp_core.data.reference_flags import FLAGS_NAME, load_reference_flags
from wmtp_core.data.schema import round_of
from wmtp_core.data.sources.registry import read_source
from wmtp_core.data.sp import SpTokenizer
from wmtp_core.data.split import SplitConfig, round_groups
from wmtp_core.data.validate import check_raw_file, validate_datasets

SOURCES = ["codecontests", "mbpp"]
MAX_BYTES = 2 * 1024 * 1024


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("source", SOURCES)
def test_shipped_negatives_are_valid_incorrect_rows_of_known_problems(source) -> None:
    layout = SourceLayout(paths.DATASETS_ROOT, source)
    path = layout.raw_extra_dir / "negatives.jsonl"
    sidecar = layout.raw_extra_dir / "negatives.mutations.jsonl"
    assert path.stat().st_size < MAX_BYTES and sidecar.stat().st_size < MAX_BYTES
    fc = check_raw_file(path)
    assert fc.errors == [] and fc.total == len(fc.rows) > 0
    assert all(r["is_correct"] is False for r in fc.rows)
    problems = {r["task_id"]: r for r in read_source(layout).rows}
    unreliable = load_reference_flags(layout).task_ids
    for row in fc.rows:
        ref = problems[row["task_id"]]
        assert (row["instruction"], row["input"], row["test_cases"]) == (
            ref["instruction"],
            ref["input"],
            ref["test_cases"],
        )
        assert row["output"] != ref["output"] and row["task_id"] not in unreliable
    notes = _read(sidecar)
    assert [(n["line"], n["task_id"]) for n in notes] == [
        (i, r["task_id"]) for i, r in enumerate(fc.rows, start=1)
    ]


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shipped") / "datasets"
    for source in SOURCES:
        src = SourceLayout(paths.DATASETS_ROOT, source)
        dst = SourceLayout(root, source)
        shutil.copytree(src.source_dir, dst.source_dir)
        shutil.copytree(src.raw_extra_dir, dst.raw_extra_dir)
        if (src.dir / FLAGS_NAME).is_file():
            shutil.copyfile(src.dir / FLAGS_NAME, dst.dir / FLAGS_NAME)
    budget = Budget(SpTokenizer(paths.CODE_TOKENIZER), 2048)
    for source in SOURCES:
        report = prepare_source(SourceLayout(root, source), budget, SplitConfig())
        assert report.extra_kept > 0
    return root


@pytest.mark.parametrize("source", SOURCES)
def test_prepare_on_shipped_data_gives_both_classes_in_small_sets(shipped_copy, source) -> None:
    layout = SourceLayout(shipped_copy, source)
    groups = round_groups(_read(layout.raw_file))  # rounds sharing a statement (parallel Div. 1/2) join

    def group_of(row: dict) -> str:
        return groups[round_of(row["metadata"]["task_id"])]

    for split in ("train", "validation"):
        small = {group_of(r) for r in _read(layout.split_file(split, "small"))}
        small_bad = _read(layout.split_file(split, "small", incorrect=True))
        assert small_bad, f"{source} {split}_small has no incorrect rows"
        assert all(r["metadata"]["is_correct"] is False for r in small_bad)
        assert {group_of(r) for r in small_bad} <= small


def test_validation_of_shipped_data_with_negatives_passes(shipped_copy) -> None:
    report = validate_datasets(shipped_copy, SOURCES, paths.CODE_TOKENIZER, 2048)
    assert report.ok, report.errors[:5]
    assert report.counts["codecontests"]["processed_incorrect/train"] > 0
