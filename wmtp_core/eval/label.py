"""Label generated samples by execution and emit raw-schema rows the data pipeline accepts.

Raw row: instruction/input/test_cases from the problem's own raw row, `output` = the generated program
(HumanEval: function prompt + completion, like the reference rows), `is_correct` = passed in the sandbox.
Skipped and counted (never silently): problems flagged unreliable, empty completions, exact duplicates of an
earlier row, rows the raw schema rejects.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from wmtp_core.eval.harness import score_samples
from wmtp_core.eval.problems import Problem, load_problems
from wmtp_core.eval.reliability import excluded_task_ids
from wmtp_core.io import atomic_write_text

SAMPLE_FIELDS = ("task_id", "completion")


@dataclass
class LabelReport:
    out_path: Path
    n_rows: int
    n_correct: int
    skipped: Counter = field(default_factory=Counter)


def read_samples(path: Path) -> list[dict]:
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{line_no}: malformed JSON: {exc.msg}") from exc
        missing = [f for f in SAMPLE_FIELDS if not isinstance(row.get(f), str)]
        if missing:
            raise ValueError(f"{path}:{line_no}: {missing[0]}: missing or not a string")
        rows.append(row)
    return rows


def program_of(problem: Problem, completion: str) -> str:
    return problem.tests["prompt"] + completion if problem.source == "humaneval" else completion


def raw_label_row(problem: Problem, completion: str, passed: bool) -> dict:
    from wmtp_core.data.sources.common import raw_row

    raw = problem.raw
    return raw_row(raw["instruction"], raw["input"], program_of(problem, completion), problem.task_id,
                   raw["test_cases"], passed)


def label_results(results: list[dict], problems: dict[str, Problem], excluded: set[str]
                  ) -> tuple[list[dict], Counter]:
    """Executed sample rows (with `passed`) -> raw rows and skip counts."""
    from wmtp_core.data.schema import raw_problems

    rows, skipped, seen = [], Counter(), set()
    for result in results:
        task_id = result["task_id"]
        if task_id in excluded:
            skipped["unreliable problem"] += 1
            continue
        if task_id not in problems:
            raise ValueError(f"sample for unknown task_id {task_id!r}")
        if not result["completion"].strip():
            skipped["empty completion"] += 1
            continue
        row = raw_label_row(problems[task_id], result["completion"], bool(result.get("passed")))
        key = (task_id, row["output"], row["is_correct"])
        if key in seen:
            skipped["duplicate"] += 1
            continue
        if raw_problems(row):
            skipped["rejected by raw schema: " + "; ".join(f"{f}: {r}" for f, r in raw_problems(row))] += 1
            continue
        seen.add(key)
        rows.append(row)
    return rows, skipped


def label_samples(samples_path: Path, dataset: str, out_path: Path, workers: int = 2) -> LabelReport:
    """Execute samples (or reuse the verdicts of a results.jsonl) and write raw rows to `out_path`."""
    samples = read_samples(samples_path)
    problems = {p.task_id: p for p in load_problems(dataset)}
    excluded = excluded_task_ids(dataset)
    unknown = sorted({s["task_id"] for s in samples} - set(problems))
    if unknown:
        raise ValueError(f"{samples_path}: task_id {unknown[0]!r} is not a {dataset} problem")
    needs_run = [s for s in samples if "passed" not in s and s["task_id"] not in excluded]
    scored = {id(s): r for s, r in zip(needs_run, score_samples(needs_run, list(problems.values()), workers))}
    results = [scored.get(id(s), s) for s in samples]  # excluded samples are never run, only counted
    rows, skipped = label_results(results, problems, excluded)
    atomic_write_text(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return LabelReport(out_path, len(rows), sum(r["is_correct"] for r in rows), skipped)
