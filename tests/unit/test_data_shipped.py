"""The shipped source files are the ones storage/README.md documents (SHA256), and are parsed completely."""

from __future__ import annotations

import hashlib
import re

import pytest

from wmtp_core import paths

README = paths.STORAGE / "README.md"
SHIPPED = [
    "datasets/mbpp/source/mbpp.jsonl",
    "datasets/mbpp/source/sanitized-mbpp.json",
    "datasets/codecontests/source/codecontests_derived_sample.jsonl",
    "datasets/codecontests/raw_extra/negatives.jsonl",
    "datasets/codecontests/raw_extra/negatives.mutations.jsonl",
    "datasets/mbpp/raw_extra/negatives.jsonl",
    "datasets/mbpp/raw_extra/negatives.mutations.jsonl",
    "tokenizers/mistral-v1-32000.model",
    "tokenizers/wmtp-code-8k.model",
]


@pytest.mark.parametrize("rel", SHIPPED)
def test_shipped_file_matches_documented_sha256(rel) -> None:
    row = next(
        line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith(f"| `{rel}`")
    )
    documented = re.findall(r"`([0-9a-f]{64})`", row)
    assert len(documented) == 1
    assert hashlib.sha256((paths.STORAGE / rel).read_bytes()).hexdigest() == documented[0]
