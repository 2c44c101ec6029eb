"""Problems whose own reference solution fails their tests (special judge, float tolerance, too slow here).

Their tests cannot tell right from wrong, so they are kept out of pass@k, labelling and negatives. The flags are
computed once by running every reference (`wmtp eval --check-references --dataset codecontests`) and cached
in storage/datasets/codecontests/unreliable.json together with the SHA256 of the problem file they describe.
"""

from __future__ import annotations

from pathlib import Path

from wmtp_core import paths
from wmtp_core.eval.checkers import CheckResult, check_many
from wmtp_core.eval.problems import CODECONTESTS_FILE, Problem
from wmtp_core.eval.sandbox import SandboxLimits
from wmtp_core.io import atomic_write_json, read_json, sha256_file

UNRELIABLE_FILE = paths.DATASETS_ROOT / "codecontests" / "unreliable.json"


def check_references(problems: list[Problem], workers: int = 2, limits: SandboxLimits | None = None
                     ) -> list[CheckResult]:
    return check_many([(p, p.reference) for p in problems], workers=workers, limits=limits)


def flags_from_results(results: list[CheckResult]) -> dict[str, dict]:
    return {r.task_id: {"status": r.status, "detail": r.detail[-500:], "tests_passed": r.tests_passed,
                        "tests_total": r.tests_total} for r in results if not r.passed}


def write_unreliable(flags: dict[str, dict], n_problems: int, limits: SandboxLimits | None,
                     problem_file: Path = CODECONTESTS_FILE, path: Path = UNRELIABLE_FILE) -> Path:
    payload = {
        "problem_file": problem_file.name,
        "problem_file_sha256": sha256_file(problem_file),
        "n_problems": n_problems,
        "limits": limits.model_dump() if limits else "checker defaults",
        "flagged": dict(sorted(flags.items())),
    }
    return atomic_write_json(path, payload)


def load_unreliable(path: Path = UNRELIABLE_FILE, problem_file: Path = CODECONTESTS_FILE) -> set[str]:
    """Flagged task ids; the file must describe the current problem file (else recompute it)."""
    payload = read_json(path, ValueError, expect=dict, missing=lambda p: FileNotFoundError(
        f"{p}: not found; run `wmtp eval --check-references --dataset codecontests`"))
    if payload.get("problem_file_sha256") != sha256_file(problem_file):
        raise ValueError(f"{path}: problem_file_sha256 does not match {problem_file}; run "
                         "`wmtp eval --check-references --dataset codecontests` again")
    return set(payload["flagged"])


def excluded_task_ids(dataset: str) -> set[str]:
    """Task ids to keep out of pass@k and labelling for `dataset` (only CodeContests has any)."""
    return load_unreliable() if dataset == "codecontests" else set()
