"""CodeContests -> raw rows. Reads DeepMind's record format and the shipped derived sample's format.

DeepMind records: `name`, `description`, `public_tests`/`private_tests`/`generated_tests` ({input, output}),
`solutions`/`incorrect_solutions` ({language: [id], solution: [code]}), `source`, `cf_contest_id`,
`cf_index`, ... Language ids: 0 unknown, 1 PYTHON (Python 2), 2 C++, 3 PYTHON3, 4 Java. Only PYTHON3 solutions
become rows; Python 2 solutions are skipped and counted (as Python 3 they would often be wrong "correct"
answers, e.g. `print x`). Missing optional fields are treated as empty objects. Correct solutions give
`is_correct=true` rows, incorrect ones `is_correct=false` rows, all with the same task_id; code repeated
within a record is kept once (the first occurrence, correct before incorrect) and the repeats are counted as
skipped. Test cases: public + private + generated, in that order.

The derived sample (one problem per line: `name`, `description`, `cf_contest_id`, `cf_index`, `solutions`,
`tests`) has one accepted Python 3 solution per problem and up to 10 stripped test cases
(feed `input + "\n"`).
"""

from __future__ import annotations

import re
from pathlib import Path

from wmtp_core.data.description import looks_special_judge, parse_statement
from wmtp_core.data.errors import RowError
from wmtp_core.data.jsonl import iter_jsonl
from wmtp_core.data.schema import TASK_ID_RE, Problem, check_fields, check_test_cases, combine
from wmtp_core.data.sources.common import SourceRows, raw_row

PYTHON2, PYTHON3 = 1, 3
SOURCE_NAMES = {
    0: "unknown",
    1: "codechef",
    2: "codeforces",
    3: "hackerearth",
    4: "codejam",
    5: "atcoder",
    6: "aizu",
}
_TEST_GROUPS = ("public_tests", "private_tests", "generated_tests")


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "-", text).strip("-").lower()[:48] or "problem"


def task_id_for(record: dict) -> str:
    """`<cf_contest_id>_<cf_index>` for Codeforces; otherwise `<site>-<first word of name>_A`."""
    contest, index = record.get("cf_contest_id"), record.get("cf_index")
    if isinstance(contest, int) and contest > 0 and isinstance(index, str) and index:
        return f"{contest}_{index}"
    site = record.get("source")
    site_name = SOURCE_NAMES.get(site, "unknown") if isinstance(site, int) else _slug(str(site or "unknown"))
    first = str(record.get("name", "")).split(" ")[0].split(".")[0]
    return f"{site_name}-{_slug(first)}_A"


def _check_solutions(sols: dict, name: str) -> list[Problem]:
    if not sols:
        return []
    problems = check_fields(sols, {"language": list, "solution": list}, prefix=f"{name}.")
    if problems:
        return problems
    if len(sols["language"]) != len(sols["solution"]):
        return [
            (name, f"language/solution lengths differ ({len(sols['language'])} != {len(sols['solution'])})")
        ]
    for i, (lang, code) in enumerate(zip(sols["language"], sols["solution"])):
        if type(lang) is not int:
            problems.append((f"{name}.language[{i}]", f"expected int, got {type(lang).__name__}"))
        if not isinstance(code, str):
            problems.append((f"{name}.solution[{i}]", f"expected str, got {type(code).__name__}"))
    return problems


def _record_problems(rec: dict, derived: bool) -> list[Problem]:
    required = {"name": str, "description": str}
    problems = [(k, "missing field") for k in required if k not in rec]
    problems += [
        (k, f"expected str, got {type(rec[k]).__name__}")
        for k, t in required.items()
        if k in rec and not isinstance(rec[k], t)
    ]
    groups = ("solutions", "tests") if derived else ("solutions", "incorrect_solutions", *_TEST_GROUPS)
    for g in groups:
        value = rec.get(g, {})
        if not isinstance(value, dict):
            problems.append((g, f"expected object, got {type(value).__name__}"))
        elif g.endswith("solutions"):
            problems += _check_solutions(value, g)
        else:
            problems += [(f"{g}{f[len('test_cases') :]}", r) for f, r in check_test_cases(value)]
    if not problems and not rec["description"].strip():
        problems.append(("description", "empty"))
    if not problems and not TASK_ID_RE.match(task_id_for(rec)):
        problems.append(("cf_index", f"cannot form a task_id from {task_id_for(rec)!r}"))
    return problems


def _tests(rec: dict, derived: bool) -> dict:
    groups = [rec.get("tests", {})] if derived else [rec.get(g, {}) for g in _TEST_GROUPS]
    inputs = [x for g in groups for x in g.get("input", [])]
    outputs = [x for g in groups for x in g.get("output", [])]
    return {"input": inputs, "output": outputs} if inputs else {}


def _example_input(description: str, tests: dict) -> str:
    examples = parse_statement(description).examples
    if examples:
        return examples[0][0]
    return tests["input"][0] if tests else ""


def convert_record(rec: dict, origin: tuple[str, int], out: SourceRows) -> None:
    """Append the record's Python 3 solutions as raw rows (or an error) to `out`."""
    derived = "tests" in rec and "public_tests" not in rec
    problems = _record_problems(rec, derived)
    if problems:
        out.errors.append(RowError(*origin, *combine(problems)))
        return
    task_id, tests = task_id_for(rec), _tests(rec, derived)
    if looks_special_judge(rec["description"]):
        out.special_judge.add(task_id)
    example = _example_input(rec["description"], tests)
    seen: set[str] = set()
    for group, correct in (("solutions", True), ("incorrect_solutions", False)):
        sols = rec.get(group, {})
        for lang, code in zip(sols.get("language", []), sols.get("solution", [])):
            if lang != PYTHON3:
                out.skipped[
                    "python2 solution" if lang == PYTHON2 else f"non-python solution (language {lang})"
                ] += 1
                continue
            if not code.strip():
                out.errors.append(RowError(origin[0], origin[1], f"{group}.solution", "empty code"))
                continue
            row = raw_row(rec["description"], example, code, task_id, tests, correct)
            if row["output"] in seen:  # the same code twice (or judged both ways) would be one row twice
                out.skipped["repeated solution in the same record"] += 1
                continue
            seen.add(row["output"])
            out.add(row, origin)


def read_codecontests(path: Path, display: str) -> SourceRows:
    out = SourceRows()
    for line_no, rec in iter_jsonl(path, display):
        out.records_in += 1
        if isinstance(rec, RowError):
            out.errors.append(rec)
        else:
            convert_record(rec, (display, line_no), out)
    return out
