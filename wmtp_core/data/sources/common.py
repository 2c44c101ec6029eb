"""What every source reader returns: raw rows with their origin, the rows it could not convert, and skips."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from wmtp_core.data.corpus import normalize_newlines
from wmtp_core.data.errors import RowError


@dataclass
class SourceRows:
    rows: list[dict] = field(default_factory=list)
    origins: list[tuple[str, int]] = field(default_factory=list)  # (file, line) per row
    special_judge: set[str] = field(default_factory=set)  # task_ids whose tests are not exact-match
    errors: list[RowError] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count (documented, not errors)
    records_in: int = 0
    from_raw: bool = False  # rows were read from an existing raw file (which is then not rewritten)

    def add(self, row: dict, origin: tuple[str, int]) -> None:
        self.rows.append(row)
        self.origins.append(origin)

    def extend(self, other: SourceRows) -> None:
        self.rows += other.rows
        self.origins += other.origins
        self.special_judge |= other.special_judge
        self.errors += other.errors
        self.skipped.update(other.skipped)
        self.records_in += other.records_in


def clean_code(code: str) -> str:
    """LF newlines, no leading blank lines, no trailing whitespace (indentation inside is untouched)."""
    lines = normalize_newlines(code).split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip()


def full_text(instruction: str, input_text: str, output: str) -> str:
    return "\n\n".join(part for part in (instruction, input_text, output) if part)


def raw_row(
    instruction: str, input_text: str, output: str, task_id: str, test_cases: dict, is_correct: bool
) -> dict:
    instruction = normalize_newlines(instruction).strip()
    input_text = normalize_newlines(input_text).strip("\n")
    output = clean_code(output)
    return {
        "instruction": instruction,
        "input": input_text,
        "output": output,
        "task_id": task_id,
        "test_cases": test_cases,
        "is_correct": is_correct,
        "full_text": full_text(instruction, input_text, output),
    }
