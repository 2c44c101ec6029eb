"""Stage 1 refuses data without both classes (naming files and counts); it never skips an empty incorrect file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.train import train_config, write_tiny_datasets
from wmtp_core.data.errors import DatasetError
from wmtp_core.train.data import load_rows


def _cfg(tmp_path: Path, data: Path):
    return train_config(tmp_path, "verifiable", tmp_path / "model", data)


def test_both_classes_load(tmp_path: Path) -> None:
    rows = load_rows(_cfg(tmp_path, write_tiny_datasets(tmp_path / "d")), include_incorrect=True)
    flags = [m["is_correct"] for m in rows["metadata"]]
    assert flags.count(True) == 12 and flags.count(False) == 8  # 6 correct + 4 incorrect per source, 2 sources


def test_empty_incorrect_files_are_refused_with_files_and_counts(tmp_path: Path) -> None:
    data = write_tiny_datasets(tmp_path / "d")
    for source in ("codecontests", "mbpp"):
        (data / source / "processed_incorrect" / "train_small.jsonl").write_text("")
    cfg = _cfg(tmp_path, data)
    with pytest.raises(DatasetError) as err:
        load_rows(cfg, include_incorrect=True)
    msg = str(err.value)
    assert "12 correct and 0 incorrect" in msg and "no incorrect rows" in msg
    assert "mbpp/processed_incorrect/train_small.jsonl: 0 rows" in msg
    assert "codecontests/processed/train_small.jsonl: 6 rows" in msg
    assert len(load_rows(cfg, include_incorrect=False)) == 12  # Stage 2 needs correct rows only


def test_rows_of_one_class_only_are_refused(tmp_path: Path) -> None:
    data = write_tiny_datasets(tmp_path / "d")
    for source in ("codecontests", "mbpp"):  # mislabelled: the incorrect bucket holds rows marked correct
        path = data / source / "processed_incorrect" / "train_small.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            row["metadata"]["is_correct"] = True
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (data / source / "processed" / "train_small.jsonl").write_text("")
    with pytest.raises(DatasetError, match=r"got 8 correct and 0 incorrect .*processed/train_small.jsonl: 0 rows"):
        load_rows(_cfg(tmp_path, data), include_incorrect=True)


def test_a_source_without_negatives_is_refused_even_when_another_has_them(tmp_path: Path) -> None:
    """One source's empty incorrect file is not hidden by another source's negatives: with mbpp all-correct the
    critic could learn "mbpp -> correct" instead of the reward."""
    data = write_tiny_datasets(tmp_path / "d")
    (data / "mbpp" / "processed_incorrect" / "train_small.jsonl").write_text("")
    with pytest.raises(DatasetError) as err:
        load_rows(_cfg(tmp_path, data), include_incorrect=True)
    msg = str(err.value)
    assert "mbpp has only one class" in msg and "codecontests: 6 correct / 4 incorrect" in msg
    assert "mbpp: 6 correct / 0 incorrect" in msg and "mbpp/processed_incorrect/train_small.jsonl: 0 rows" in msg
