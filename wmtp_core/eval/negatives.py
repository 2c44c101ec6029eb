"""Verified negatives: mutants of accepted solutions that run and FAIL their tests in the sandbox.

For each reliable problem the reference's single-point mutants (`mutate.py`) are shuffled (seeded) and tried
in turn; a mutant is kept when the checker says `failed` (it ran to completion and gave a wrong answer or
failed an assert), not when it crashed or timed out, and not when it still passes (an equivalent mutant).
Output: raw-schema rows with is_correct=false (the raw schema allows no extra field, so each row's mutation
is recorded in a sidecar `<out>.mutations.jsonl`, one line per row, same order, with the row's line number and
`first_diff_char`, the index of the first character where the mutant differs from the accepted solution; the
critic report finds the divergent token by comparing token ids, so sidecars without the field work too).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wmtp_core.eval.checkers import check
from wmtp_core.eval.critic_metrics import first_divergence
from wmtp_core.eval.label import raw_label_row
from wmtp_core.eval.mutate import Mutation, mutants
from wmtp_core.eval.problems import Problem
from wmtp_core.eval.sandbox import SandboxLimits, detect_isolation
from wmtp_core.io import atomic_write_text

# References pass well inside these; mutants that loop (a dropped `i += 1`) are cut off early.
NEGATIVE_LIMITS = SandboxLimits(wall_s=4.0, cpu_s=2, max_output_bytes=1 << 20)


@dataclass
class NegativeReport:
    out_path: Path
    sidecar_path: Path
    n_rows: int
    kinds: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)  # mutant verdicts that were not kept
    problems_without_negative: list[str] = field(default_factory=list)


def sidecar_path_for(out_path: Path) -> Path:
    return out_path.with_name(out_path.name.removesuffix(".jsonl") + ".mutations.jsonl")


def negatives_for(problem: Problem, per_problem: int, max_tries: int, seed: int,
                  limits: SandboxLimits = NEGATIVE_LIMITS) -> tuple[list[tuple[Mutation, str, str]], Counter]:
    """Up to `per_problem` (mutation, code, detail) that fail the tests, trying at most `max_tries` mutants."""
    candidates = mutants(problem.reference)
    random.Random(f"{seed}:{problem.task_id}").shuffle(candidates)
    kept, rejected = [], Counter()
    for mutation, code in candidates[:max_tries]:
        verdict = check(problem, code, limits)
        if verdict.status == "failed":
            kept.append((mutation, code, verdict.detail))
            if len(kept) == per_problem:
                break
        else:
            rejected[verdict.status] += 1
    return kept, rejected


def make_negatives(problems: list[Problem], out_path: Path, per_problem: int = 2, max_tries: int = 8,
                   seed: int = 0, workers: int = 2) -> NegativeReport:
    detect_isolation()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = list(pool.map(lambda p: negatives_for(p, per_problem, max_tries, seed), problems))
    rows, notes = [], []
    report = NegativeReport(out_path, sidecar_path_for(out_path), 0)
    for problem, (kept, rejected) in zip(problems, found):
        report.rejected.update(rejected)
        if not kept:
            report.problems_without_negative.append(problem.task_id)
        for mutation, code, detail in kept:
            rows.append(raw_label_row(problem, code, passed=False))
            notes.append({"line": len(rows), "task_id": problem.task_id, "kind": mutation.kind,
                          "mutation": mutation.describe(), "detail": detail[-300:],
                          "first_diff_char": first_divergence(problem.reference, code)})
            report.kinds[mutation.kind] += 1
    report.n_rows = len(rows)
    atomic_write_text(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic_write_text(report.sidecar_path, "".join(json.dumps(n, ensure_ascii=False) + "\n" for n in notes))
    return report
