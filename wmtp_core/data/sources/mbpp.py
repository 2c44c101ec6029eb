"""MBPP (mbpp.jsonl: text, code, task_id, test_setup_code, test_list, challenge_test_list) -> raw rows.

Each problem is its own round: task_id `mbpp-<id>_A`. `instruction` is the problem text, `input` holds the
assert lines of `test_list` (one per line; the prompt shows at most two), `output` the reference code
(`is_correct=true`). MBPP has no stdin/stdout tests, so `test_cases` is the empty object.
"""

from __future__ import annotations

from pathlib import Path

from wmtp_core.data.errors import RowError
from wmtp_core.data.jsonl import iter_jsonl
from wmtp_core.data.schema import Problem, check_fields, combine
from wmtp_core.data.sources.common import SourceRows, raw_row

MBPP_FIELDS: dict[str, type] = {
    "text": str,
    "code": str,
    "task_id": int,
    "test_setup_code": str,
    "test_list": list,
    "challenge_test_list": list,
}


def _problems(rec: dict) -> list[Problem]:
    problems = check_fields(rec, MBPP_FIELDS)
    if problems:
        return problems
    if rec["task_id"] < 0:
        return [("task_id", f"expected a non-negative id, got {rec['task_id']}")]
    problems += [
        (f"test_list[{i}]", "expected str") for i, t in enumerate(rec["test_list"]) if not isinstance(t, str)
    ]
    if not rec["code"].strip():
        problems.append(("code", "empty code"))
    if not rec["text"].strip():
        problems.append(("text", "empty"))
    return problems


def mbpp_row(rec: dict) -> dict:
    tests = "\n".join(t.strip() for t in rec["test_list"])
    return raw_row(rec["text"], tests, rec["code"], f"mbpp-{rec['task_id']}_A", {}, True)


def read_mbpp(path: Path, display: str) -> SourceRows:
    out = SourceRows()
    for line_no, rec in iter_jsonl(path, display):
        out.records_in += 1
        problems = [] if isinstance(rec, RowError) else _problems(rec)
        if isinstance(rec, RowError):
            out.errors.append(rec)
        elif problems:
            out.errors.append(RowError(display, line_no, *combine(problems)))
        else:
            out.add(mbpp_row(rec), (display, line_no))
    return out
