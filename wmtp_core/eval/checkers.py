"""Per-dataset correctness checks of a completion, executed in the sandbox.

humaneval:    prompt + completion + test + `check(entry_point)`        (the completion continues the prompt)
mbpp:         code + test_setup_code + the test_list asserts            (the completion is the whole program)
codecontests: the program reads each test input on stdin; its stdout must equal the expected output after
              whitespace normalisation (runs of spaces/tabs collapsed, blank lines and edge whitespace dropped).
              Test cases run in order and stop at the first failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from wmtp_core.eval.problems import Problem
from wmtp_core.eval.sandbox import ExecResult, SandboxLimits, Status, detect_isolation, run_program
from wmtp_core.secrets import scrub

DETAIL_CHARS = 2000
DEFAULT_LIMITS: dict[str, SandboxLimits] = {
    "humaneval": SandboxLimits(wall_s=10.0, cpu_s=6),
    "mbpp": SandboxLimits(wall_s=10.0, cpu_s=6),
    "codecontests": SandboxLimits(wall_s=10.0, cpu_s=5, max_output_bytes=4 << 20),
}


@dataclass
class CheckResult:
    task_id: str
    status: Status
    detail: str  # stderr tail or the first output mismatch, scrubbed of secrets and token-looking strings

    def __post_init__(self) -> None:
        self.detail = scrub(self.detail)
    tests_passed: int
    tests_total: int

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self) | {"passed": self.passed}


def humaneval_program(tests: dict, completion: str) -> str:
    return f"{tests['prompt']}{completion}\n\n{tests['test']}\n\ncheck({tests['entry_point']})\n"


def mbpp_program(tests: dict, code: str) -> str:
    asserts = "\n".join(tests["test_list"])
    return f"{code}\n\n{tests['test_setup_code']}\n\n{asserts}\n"


def normalise_output(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def outputs_match(actual: str, expected: str) -> bool:
    return normalise_output(actual) == normalise_output(expected)


def _tail(result: ExecResult) -> str:
    return result.stderr[-DETAIL_CHARS:]


def _check_script(problem: Problem, program: str, limits: SandboxLimits) -> CheckResult:
    result = run_program(program, limits=limits)
    return CheckResult(problem.task_id, result.status, _tail(result), int(result.passed), 1)


def _check_stdio(problem: Problem, code: str, limits: SandboxLimits) -> CheckResult:
    cases = list(zip(problem.tests["input"], problem.tests["output"]))
    for i, (stdin, expected) in enumerate(cases):
        result = run_program(code, stdin=stdin + "\n", limits=limits, require_end=False)
        if result.passed and result.stdout_truncated:
            return CheckResult(problem.task_id, "failed", f"test {i}: output over the cap", i, len(cases))
        if result.passed and not outputs_match(result.stdout, expected):
            got = " | ".join(normalise_output(result.stdout))[:200]
            want = " | ".join(normalise_output(expected))[:200]
            return CheckResult(problem.task_id, "failed", f"test {i}: expected {want!r}, got {got!r}", i,
                               len(cases))
        if not result.passed:
            return CheckResult(problem.task_id, result.status, f"test {i}: {_tail(result)}", i, len(cases))
    return CheckResult(problem.task_id, "passed", "", len(cases), len(cases))


def check(problem: Problem, completion: str, limits: SandboxLimits | None = None) -> CheckResult:
    """Run one completion against its problem's tests."""
    limits = limits or DEFAULT_LIMITS[problem.source]
    if problem.source == "humaneval":
        return _check_script(problem, humaneval_program(problem.tests, completion), limits)
    if problem.source == "mbpp":
        return _check_script(problem, mbpp_program(problem.tests, completion), limits)
    if problem.source == "codecontests":
        return _check_stdio(problem, completion, limits)
    raise ValueError(f"{problem.task_id}: no checker for source {problem.source!r}")


def check_many(pairs: Sequence[tuple[Problem, str]], workers: int = 2, limits: SandboxLimits | None = None
               ) -> list[CheckResult]:
    """Check (problem, completion) pairs on `workers` parallel sandboxes; results in input order."""
    detect_isolation()  # probe once before the threads start
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda pair: check(pair[0], pair[1], limits), pairs))
