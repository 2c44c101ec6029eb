"""`wmtp label` and `wmtp make-negatives` produce raw rows the data pipeline's raw validation accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wmtp_core.cli import main
from wmtp_core.data.validate import check_raw_file
from wmtp_core.eval.checkers import check
from wmtp_core.eval.harness import select_problems
from wmtp_core.eval.problems import load_problems
from wmtp_core.eval.reliability import load_unreliable

pytestmark = pytest.mark.integration


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_label_executes_samples_and_counts_skips(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p1, p2 = load_problems("mbpp", limit=2)
    samples = [
        {"task_id": p1.task_id, "completion": p1.reference},
        {"task_id": p1.task_id, "completion": p2.reference},  # wrong program for p1
        {"task_id": p2.task_id, "completion": p2.reference},
        {"task_id": p2.task_id, "completion": p2.reference},  # duplicate
        {"task_id": p2.task_id, "completion": "   \n"},  # empty
    ]
    out = tmp_path / "labelled.jsonl"
    assert main(["label", "--samples", str(_write_jsonl(tmp_path / "s.jsonl", samples)), "--dataset", "mbpp",
                 "--out", str(out)]) == 0
    rows = _read_jsonl(out)
    assert [(r["task_id"], r["is_correct"]) for r in rows] == [(p1.task_id, True), (p1.task_id, False),
                                                               (p2.task_id, True)]
    printed = capsys.readouterr().out
    assert "skipped 1: duplicate" in printed and "skipped 1: empty completion" in printed
    checked = check_raw_file(out)
    assert checked.errors == [] and len(checked.rows) == 3


def test_label_reuses_verdicts_and_skips_unreliable(tmp_path: Path) -> None:
    flagged = sorted(load_unreliable())[0]
    reliable = select_problems("codecontests", limit=1)[0][0]
    results = [
        {"task_id": reliable.task_id, "completion": "print('no')\n", "passed": True},  # verdict trusted as given
        {"task_id": flagged, "completion": "print(1)\n", "passed": False},
    ]
    out = tmp_path / "cc.jsonl"
    assert main(["label", "--samples", str(_write_jsonl(tmp_path / "r.jsonl", results)),
                 "--dataset", "codecontests", "--out", str(out)]) == 0
    rows = _read_jsonl(out)
    assert len(rows) == 1 and rows[0]["is_correct"] and rows[0]["test_cases"] == reliable.raw["test_cases"]
    assert check_raw_file(out).errors == []


def test_make_negatives_keeps_only_failing_mutants(tmp_path: Path) -> None:
    out = tmp_path / "neg.jsonl"
    assert main(["make-negatives", "--out", str(out), "--limit", "3", "--per-problem", "2"]) == 0
    rows, notes = _read_jsonl(out), _read_jsonl(tmp_path / "neg.mutations.jsonl")
    assert rows and len(rows) == len(notes)
    assert check_raw_file(out).errors == []
    problems = {p.task_id: p for p in load_problems("codecontests")}
    flagged = load_unreliable()
    for line, (row, note) in enumerate(zip(rows, notes), start=1):
        assert note["line"] == line and note["task_id"] == row["task_id"] and not row["is_correct"]
        assert row["task_id"] not in flagged and note["kind"] in note["mutation"]
        ref, d = problems[row["task_id"]].reference, note["first_diff_char"]
        assert row["output"][:d] == ref[:d] and row["output"][d:d + 1] != ref[d:d + 1]
    first = problems[rows[0]["task_id"]]
    assert rows[0]["output"] != first.raw["output"]
    assert check(first, rows[0]["output"]).status == "failed"  # re-checked: runs, and fails its tests
