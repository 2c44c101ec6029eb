"""The bad-rows corpus (tests/fixtures/bad_rows/): line 2 of each file gives its precise error.

Errors read `file:line: field: reason`.

Line 1 of every file is valid, so each run must keep exactly one row and reject exactly one
(in = kept + rejected), write the reject to <source>/rejects.jsonl, and `validate-datasets`' raw-file check
must report the same message.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core import paths
from wmtp_core.data.layout import SourceLayout, display_path
from wmtp_core.data.pipeline import prepare_source
from wmtp_core.data.prepare import Budget
from wmtp_core.data.split import SplitConfig
from wmtp_core.data.validate import check_raw_file

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "bad_rows"
TOK = Tokenizer(paths.CODE_TOKENIZER)
OVER_LENGTH_CODE = "\n".join(f"value_{i} = {i} * {i}" for i in range(150))

# file -> (where it is placed, field, reason regex)
CASES = {
    "malformed_json.jsonl": ("raw", "<json>", re.escape("malformed JSON: Expecting value (column 31)")),
    "not_an_object.jsonl": ("raw", "<json>", re.escape("expected a JSON object, got list")),
    "blank_line.jsonl": ("raw", "<json>", "blank line"),
    "non_utf8.jsonl": ("raw", "<bytes>", re.escape("not valid UTF-8 (byte 0xff at column 21)")),
    "missing_field.jsonl": ("raw", "output", "missing field"),
    "extra_field.jsonl": ("raw", "difficulty", "unexpected field"),
    "null_field.jsonl": ("raw", "instruction", "expected str, got null"),
    "wrong_type_is_correct.jsonl": ("raw", "is_correct", "expected bool, got str"),
    "wrong_type_test_case.jsonl": ("raw", re.escape("test_cases.input[1]"), "expected str, got int"),
    "mismatched_tests.jsonl": ("raw", "test_cases", re.escape("input/output lengths differ (2 != 1)")),
    "bad_task_id.jsonl": (
        "raw",
        "task_id",
        re.escape("'1041E' does not match <round>_<letter> (e.g. 1041_E, mbpp-12_A)"),
    ),
    "empty_code.jsonl": ("raw", "output", "empty code"),
    "over_length.jsonl": (
        "raw",
        "output",
        re.escape(
            f"code alone needs {len(TOK.encode(OVER_LENGTH_CODE)) + 1} "
            "tokens (with EOS); with the shortest prompt ("
        )
        + r"\d+ tokens\) the row has \d+ > max_tokens=256",
    ),
    "mbpp_task_id_type.jsonl": ("mbpp", "task_id", "expected int, got str"),
    "mbpp_empty_code.jsonl": ("mbpp", "code", "empty code"),
    "codecontests_missing_description.jsonl": ("codecontests", "description", "missing field"),
    "codecontests_bad_index.jsonl": (
        "codecontests",
        "cf_index",
        re.escape("cannot form a task_id from '101_1a'"),
    ),
}


def test_every_corpus_file_has_a_case() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.jsonl")) == sorted(CASES)


def _place(root: Path, name: str, where: str) -> tuple[SourceLayout, Path]:
    source = "mbpp" if where == "mbpp" else "codecontests"
    layout = SourceLayout(root, source)
    if where == "raw":
        dst = layout.raw_file
    elif where == "mbpp":
        dst = layout.source_dir / "mbpp.jsonl"
    else:
        dst = layout.source_dir / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CORPUS / name, dst)
    return layout, dst


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_row_is_rejected_with_its_precise_error(tmp_path, name) -> None:
    where, field, reason = CASES[name]
    layout, placed = _place(tmp_path, name, where)
    before = placed.read_bytes()
    report = prepare_source(layout, Budget(TOK, max_tokens=256), SplitConfig())
    assert all(p.is_file() for p in layout.output_files())
    if where == "raw":
        assert placed.read_bytes() == before  # an input raw file is never rewritten
    tail = f"{field}: {reason}$"
    expected = re.compile(re.escape(f"{layout.relative(placed)}:2: ") + tail)
    assert len(report.errors) == 1, report.errors
    assert expected.match(report.errors[0]), report.errors[0]
    assert (report.kept, report.rejected, report.rows_in) == (1, 1, 2)
    rejects = [json.loads(line) for line in layout.rejects_file.read_text(encoding="utf-8").splitlines()]
    assert [r["message"] for r in rejects] == report.errors
    assert rejects[0]["line"] == 2
    if where == "raw" and name != "over_length.jsonl":
        fc = check_raw_file(placed)
        assert len(fc.errors) == 1
        assert re.compile(re.escape(f"{display_path(placed)}:2: ") + tail).match(str(fc.errors[0]))
        assert fc.total == 2 and len(fc.rows) == 1


def test_source_with_only_bad_rows_still_writes_every_output(tmp_path) -> None:
    layout = SourceLayout(tmp_path, "mbpp")
    layout.source_dir.mkdir(parents=True)
    (layout.source_dir / "mbpp.jsonl").write_text("{broken\n", encoding="utf-8")
    report = prepare_source(layout, Budget(TOK, max_tokens=256), SplitConfig())
    assert (report.kept, report.rejected) == (0, 1)
    assert layout.raw_file.read_text() == ""
    assert all(p.is_file() for p in layout.output_files())
