"""Row schemas (raw and processed) with precise `field: reason` problems, and the task_id / round rules.

A task_id is `<round>_<letter>`: CodeContests uses the Codeforces contest id and problem index (`1041_E`,
`1327_F1`); sources without rounds (MBPP, HumanEval) use the problem itself as its round (`mbpp-12_A`,
`humaneval-0_A`), so every problem is its own split unit.
"""

from __future__ import annotations

import re

SOURCES = ("codecontests", "mbpp", "humaneval")
TASK_ID_RE = re.compile(r"^(?P<round>[0-9A-Za-z][0-9A-Za-z-]*)_(?P<letter>[A-Za-z][0-9A-Za-z]*)$")
EOS_TEXT = "</s>"
PROMPT_HEAD = "### Instruction:\n"
PROMPT_TAIL = "### Response:\n"

RAW_FIELDS: dict[str, type] = {
    "instruction": str,
    "input": str,
    "output": str,
    "task_id": str,
    "test_cases": dict,
    "is_correct": bool,
    "full_text": str,
}
PROCESSED_FIELDS: dict[str, type] = {"prompt": str, "response": str, "metadata": dict}
METADATA_FIELDS: dict[str, type] = {"task_id": str, "source": str, "is_correct": bool, "has_tests": bool}

Problem = tuple[str, str]  # (field, reason)


def combine(problems: list[Problem]) -> Problem:
    """One (field, reason) for a row: the first problem, with the others appended to the reason."""
    field, reason = problems[0]
    if len(problems) > 1:
        reason += f" (+{len(problems) - 1} more: {'; '.join(f'{f}: {r}' for f, r in problems[1:])})"
    return field, reason


def round_of(task_id: str) -> str:
    m = TASK_ID_RE.match(task_id)
    if m is None:
        raise ValueError(f"task_id {task_id!r} does not match <round>_<letter>")
    return m.group("round")


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def check_fields(obj: dict, spec: dict[str, type], prefix: str = "") -> list[Problem]:
    """Missing fields, unexpected fields and wrong JSON types (bool is not accepted as int and vice versa)."""
    problems: list[Problem] = [(prefix + name, "missing field") for name in spec if name not in obj]
    problems += [(prefix + name, "unexpected field") for name in obj if name not in spec]
    for name, kind in spec.items():
        if name in obj and type(obj[name]) is not kind:
            problems.append((prefix + name, f"expected {kind.__name__}, got {_type_name(obj[name])}"))
    return problems


def check_task_id(task_id: str, field: str = "task_id") -> list[Problem]:
    if TASK_ID_RE.match(task_id):
        return []
    return [(field, f"{task_id!r} does not match <round>_<letter> (e.g. 1041_E, mbpp-12_A)")]


def check_test_cases(tc: dict) -> list[Problem]:
    """Either `{}` (no I/O tests) or `{input: [str...], output: [str...]}` of equal length."""
    if not tc:
        return []
    problems = check_fields(tc, {"input": list, "output": list}, prefix="test_cases.")
    if problems:
        return problems
    for side in ("input", "output"):
        for i, item in enumerate(tc[side]):
            if not isinstance(item, str):
                problems.append((f"test_cases.{side}[{i}]", f"expected str, got {_type_name(item)}"))
    if len(tc["input"]) != len(tc["output"]):
        problems.append(
            ("test_cases", f"input/output lengths differ ({len(tc['input'])} != {len(tc['output'])})")
        )
    return problems


def _nonempty(obj: dict, names: tuple[str, ...], reasons: dict[str, str]) -> list[Problem]:
    return [(n, reasons.get(n, "empty")) for n in names if not obj[n].strip()]


def raw_problems(obj: dict) -> list[Problem]:
    problems = check_fields(obj, RAW_FIELDS)
    if problems:
        return problems
    problems += _nonempty(obj, ("instruction", "output"), {"output": "empty code"})
    problems += check_task_id(obj["task_id"])
    problems += check_test_cases(obj["test_cases"])
    return problems


def _check_prompt(prompt: str) -> list[Problem]:
    out: list[Problem] = []
    if not prompt.startswith(PROMPT_HEAD):
        out.append(("prompt", f"does not start with {PROMPT_HEAD!r}"))
    if not prompt.endswith(PROMPT_TAIL):
        out.append(("prompt", f"does not end with {PROMPT_TAIL!r}"))
    return out


def _check_response(response: str) -> list[Problem]:
    if not response.endswith(EOS_TEXT):
        return [("response", f"does not end with {EOS_TEXT!r}")]
    if not response[: -len(EOS_TEXT)].strip():
        return [("response", "empty code")]
    return []


def processed_problems(obj: dict, expect_correct: bool | None = None) -> list[Problem]:
    problems = check_fields(obj, PROCESSED_FIELDS)
    if problems:
        return problems
    problems += check_fields(obj["metadata"], METADATA_FIELDS, prefix="metadata.")
    if problems:
        return problems
    meta = obj["metadata"]
    problems += _check_prompt(obj["prompt"]) + _check_response(obj["response"])
    problems += check_task_id(meta["task_id"], "metadata.task_id")
    if meta["source"] not in SOURCES:
        problems.append(("metadata.source", f"{meta['source']!r} is not one of {list(SOURCES)}"))
    if expect_correct is not None and meta["is_correct"] is not expect_correct:
        where = "processed" if expect_correct else "processed_incorrect"
        problems.append(("metadata.is_correct", f"{meta['is_correct']} row in {where}/"))
    return problems

