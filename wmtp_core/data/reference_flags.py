"""Measured reference-check flags (`codecontests/unreliable.json`, written by `wmtp eval --check-references`).

Problems whose own accepted solution fails their exact-match tests (special judge, float tolerance, too slow)
get `has_tests=false`, on top of the statement heuristic in description.py. The file is used only when it
describes the current source file (same name and SHA256); otherwise it is ignored and the heuristic alone
applies (reported by prepare-data).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from wmtp_core.data.layout import SourceLayout

FLAGS_NAME = "unreliable.json"


@dataclass(frozen=True)
class ReferenceFlags:
    task_ids: frozenset[str] = field(default_factory=frozenset)
    note: str = "no reference-check flags"


def flags_file(layout: SourceLayout) -> Path:
    return layout.dir / FLAGS_NAME


def load_reference_flags(layout: SourceLayout) -> ReferenceFlags:
    path = flags_file(layout)
    if layout.source != "codecontests" or not path.is_file():
        return ReferenceFlags()
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        name, digest, flagged = payload["problem_file"], payload["problem_file_sha256"], payload["flagged"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        return ReferenceFlags(note=f"{layout.relative(path)}: ignored (unreadable: {err})")
    source = layout.source_dir / str(name)
    if not source.is_file() or hashlib.sha256(source.read_bytes()).hexdigest() != digest:
        return ReferenceFlags(note=f"{layout.relative(path)}: ignored (describes another {name})")
    return ReferenceFlags(frozenset(flagged), f"{layout.relative(path)}: {len(flagged)} problems flagged")
