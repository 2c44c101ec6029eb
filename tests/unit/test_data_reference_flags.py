"""Measured reference-check flags turn has_tests off, only when they describe the current source file."""

from __future__ import annotations

import hashlib
import json

from fixtures.data import write_jsonl

from wmtp_core import paths
from wmtp_core.data.layout import SourceLayout
from wmtp_core.data.pipeline import prepare_source
from wmtp_core.data.prepare import Budget
from wmtp_core.data.reference_flags import load_reference_flags
from wmtp_core.data.sp import SpTokenizer
from wmtp_core.data.split import SplitConfig


def _record(contest: int) -> dict:
    return {
        "name": f"{contest}_A. X",
        "description": f"Print {contest}.\n\nInput\n\nNothing.\n\nOutput\n\nA number.",
        "cf_contest_id": contest,
        "cf_index": "A",
        "solutions": {"language": [3], "solution": [f"print({contest})"]},
        "tests": {"input": [""], "output": [str(contest)]},
    }


def _setup(tmp_path, digest: str | None = None):
    layout = SourceLayout(tmp_path, "codecontests")
    src = write_jsonl(layout.source_dir / "sample.jsonl", [_record(c) for c in (100, 200, 300)])
    flags = {
        "problem_file": "sample.jsonl",
        "flagged": {"200_A": {"status": "failed"}},
        "problem_file_sha256": digest or hashlib.sha256(src.read_bytes()).hexdigest(),
    }
    (layout.dir / "unreliable.json").write_text(json.dumps(flags), encoding="utf-8")
    return layout


def _has_tests(layout: SourceLayout) -> dict[str, bool]:
    rows = []
    for split in ("train", "validation", "test"):
        text = layout.split_file(split).read_text(encoding="utf-8")
        rows += [json.loads(line) for line in text.splitlines()]
    return {r["metadata"]["task_id"]: r["metadata"]["has_tests"] for r in rows}


def test_matching_flags_turn_has_tests_off(tmp_path) -> None:
    layout = _setup(tmp_path)
    assert load_reference_flags(layout).task_ids == {"200_A"}
    report = prepare_source(layout, Budget(SpTokenizer(paths.CODE_TOKENIZER)), SplitConfig((0.4, 0.3, 0.3)))
    assert _has_tests(layout) == {"100_A": True, "200_A": False, "300_A": True}
    assert report.without_tests == 1 and "1 problems flagged" in report.reference_flags


def test_flags_for_another_file_are_ignored(tmp_path) -> None:
    layout = _setup(tmp_path, digest="0" * 64)
    flags = load_reference_flags(layout)
    assert flags.task_ids == frozenset() and "ignored (describes another sample.jsonl)" in flags.note
    prepare_source(layout, Budget(SpTokenizer(paths.CODE_TOKENIZER)), SplitConfig((0.4, 0.3, 0.3)))
    assert all(_has_tests(layout).values())
