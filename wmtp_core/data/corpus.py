"""The code corpus the project's own tokenizer is trained on, read from the shipped source files only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

CODECONTESTS_SAMPLE = Path("codecontests/source/codecontests_derived_sample.jsonl")
MBPP_FULL = Path("mbpp/source/mbpp.jsonl")

# Fixed text of the SFT prompt template, so its markers get pieces of their own.
TEMPLATE_LINES = (
    "### Instruction:",
    "### Input:",
    "### Evaluation Notes:",
    "- Return Python source code that prints the required answer.",
    "- Hidden tests are present; rely on the stated constraints rather than memorising samples.",
    "### Response:",
)


def normalize_newlines(text: str) -> str:
    """CRLF / CR line endings to LF (MBPP ships CRLF code)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _documents(datasets_root: Path) -> Iterator[str]:
    """MBPP problem text + code, then CodeContests description + solutions, in file order."""
    with (datasets_root / MBPP_FULL).open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            yield rec["text"]
            yield rec["code"]
    with (datasets_root / CODECONTESTS_SAMPLE).open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            yield rec["description"]
            yield from rec["solutions"]["solution"]


def corpus_lines(datasets_root: Path) -> Iterator[str]:
    """Every non-empty line of the corpus (SentencePiece trains on lines; newlines become byte pieces)."""
    yield from TEMPLATE_LINES
    for doc in _documents(datasets_root):
        for line in normalize_newlines(doc).split("\n"):
            if line.strip():
                yield line
