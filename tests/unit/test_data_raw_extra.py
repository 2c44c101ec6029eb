"""Extra raw rows (`<source>/raw_extra/*.jsonl`, e.g. verified negatives) join the pipeline.

They go through the raw-row checks (bad lines reported as `file:line: field: reason`), follow their problem's
split (an incorrect row of a train problem lands in processed_incorrect/train), never move a source row to
another split, and the small incorrect sets are drawn from the small sets' problems.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fixtures.data import write_jsonl

from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core import paths
from wmtp_core.data import split as split_mod
from wmtp_core.data.layout import SPLIT_FILES, SourceLayout
from wmtp_core.data.manifest import dataset_files
from wmtp_core.data.pipeline import prepare_source
from wmtp_core.data.prepare import Budget
from wmtp_core.data.schema import round_of
from wmtp_core.data.sources.mbpp import mbpp_row
from wmtp_core.data.split import SplitConfig, round_robin_order
from wmtp_core.data.validate import validate_datasets

TOK = Tokenizer(paths.CODE_TOKENIZER)
BUDGET = Budget(TOK, max_tokens=512)
N_PROBLEMS = 30
BAD_ROWS = Path(__file__).resolve().parents[1] / "fixtures" / "bad_rows"


def _mbpp_record(i: int) -> dict:
    return {
        "text": f"Write a function that returns {i} plus its argument.",
        "code": f"def add_{i}(x):\n    return x + {i}",
        "task_id": i,
        "test_setup_code": "",
        "test_list": [f"assert add_{i}(1) == {i + 1}", f"assert add_{i}(2) == {i + 2}"],
        "challenge_test_list": [],
    }


def _negative(i: int, k: int) -> dict:
    row = mbpp_row(_mbpp_record(i))
    code = f"def add_{i}(x):\n    return x - {i + k}"
    return row | {
        "output": code,
        "is_correct": False,
        "full_text": row["full_text"].replace(row["output"], code),
    }


def _root(tmp: Path, extra: list[dict] | None = None, bad_line: bool = False) -> SourceLayout:
    layout = SourceLayout(tmp / "datasets", "mbpp")
    write_jsonl(layout.source_dir / "mbpp.jsonl", [_mbpp_record(i) for i in range(1, N_PROBLEMS + 1)])
    if extra is not None:
        path = write_jsonl(layout.raw_extra_dir / "negatives.jsonl", extra)
        if bad_line:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({k: v for k, v in _negative(1, 3).items() if k != "output"}) + "\n")
        # a sidecar is not raw rows: it must be ignored by the reader (it would fail every raw check)
        write_jsonl(layout.raw_extra_dir / "negatives.mutations.jsonl", [{"line": 1, "kind": "constant"}])
    return layout


def _extra_rows() -> list[dict]:
    rows = [_negative(i, k) for i in range(1, N_PROBLEMS + 1) for k in (1, 2)]
    correct = mbpp_row(_mbpp_record(3))
    code = "def add_3(x):\n    return 3 + x"
    rows.append(
        correct | {"output": code, "full_text": correct["full_text"].replace(correct["output"], code)}
    )
    rows.append(_negative(999, 1))  # no such problem in the source
    return rows


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _split_of_tasks(layout: SourceLayout, incorrect: bool) -> dict[str, str]:
    return {
        r["metadata"]["task_id"]: s
        for s in split_mod.SPLITS
        for r in _read(layout.split_file(s, incorrect=incorrect))
    }


@pytest.fixture
def prepared(tmp_path) -> tuple[SourceLayout, object]:
    layout = _root(tmp_path, _extra_rows(), bad_line=True)
    return layout, prepare_source(layout, BUDGET, SplitConfig())


def test_extra_rows_are_counted_and_bad_ones_reported_with_file_and_line(prepared) -> None:
    layout, report = prepared
    n_extra = 2 * N_PROBLEMS + 2
    assert report.records_in == N_PROBLEMS and report.extra_rows_in == n_extra + 1
    assert report.extra_kept == n_extra - 1
    assert (report.kept, report.rejected) == (N_PROBLEMS + n_extra - 1, 2)
    rel = "mbpp/raw_extra/negatives.jsonl"
    assert f"{rel}:{n_extra + 1}: output: missing field" in report.errors[0]
    assert re.match(
        rf"{re.escape(rel)}:{n_extra}: task_id: round 'mbpp-999' matches no kept problem", report.errors[1]
    )
    rejects = _read(layout.rejects_file)
    assert [(r["stage"], r["line"]) for r in rejects] == [("raw", n_extra + 1), ("split", n_extra)]
    # the raw file holds the rows converted from source/ only; the extra rows stay in raw_extra/
    assert len(_read(layout.raw_file)) == N_PROBLEMS


def test_incorrect_rows_land_in_their_problems_split(prepared) -> None:
    layout, _ = prepared
    correct = _split_of_tasks(layout, incorrect=False)
    incorrect_rows = [(s, r) for s in split_mod.SPLITS for r in _read(layout.split_file(s, incorrect=True))]
    assert len(incorrect_rows) == 2 * N_PROBLEMS
    assert {s for s, _ in incorrect_rows} == set(split_mod.SPLITS)
    for split, row in incorrect_rows:
        assert row["metadata"]["is_correct"] is False
        assert correct[row["metadata"]["task_id"]] == split
    extra_correct = [
        r for r in _read(layout.split_file(correct["mbpp-3_A"])) if r["metadata"]["task_id"] == "mbpp-3_A"
    ]
    assert len(extra_correct) == 2  # the source row and the extra correct row, in the same split


def test_extra_rows_do_not_move_source_rows(tmp_path) -> None:
    plain = _root(tmp_path / "a")
    prepare_source(plain, BUDGET, SplitConfig())
    with_extra = _root(tmp_path / "b", [_negative(i, 1) for i in range(1, N_PROBLEMS + 1)])
    prepare_source(with_extra, BUDGET, SplitConfig())
    for name in SPLIT_FILES:
        assert plain.split_file(name).read_bytes() == with_extra.split_file(name).read_bytes()
    assert _read(plain.split_file("train", incorrect=True)) == []
    assert len(_read(with_extra.split_file("train", incorrect=True))) > 0


def test_validation_reports_rejected_extra_rows_and_leakage_check_covers_incorrect_rows(prepared) -> None:
    layout, _ = prepared
    report = validate_datasets(layout.root, ["mbpp"], paths.CODE_TOKENIZER, 512)
    # the two bad extra rows (no output; a problem that does not exist) are the only problems
    assert len(report.errors) == 2, report.errors
    assert "negatives.jsonl:63: output: missing" in report.errors[0]
    assert "negatives.jsonl:62: task_id: round 'mbpp-999' matches no kept problem" in report.errors[1]
    assert "rejected by prepare-data, stage split" in report.errors[1]
    assert report.counts["mbpp"]["processed_incorrect/train"] > 0
    # move one incorrect row of a train problem into processed_incorrect/test: a round now in two splits
    train_bad, test_bad = (
        layout.split_file("train", incorrect=True),
        layout.split_file("test", incorrect=True),
    )
    moved = train_bad.read_text(encoding="utf-8").splitlines(keepends=True)
    test_bad.write_text(test_bad.read_text(encoding="utf-8") + moved[0], encoding="utf-8")
    train_bad.write_text("".join(moved[1:]), encoding="utf-8")
    report = validate_datasets(layout.root, ["mbpp"], paths.CODE_TOKENIZER, 512)
    leaks = [e for e in report.errors if "split leakage" in e]
    assert any("round(s) in both train and test" in e for e in leaks), report.errors


def test_manifest_lists_raw_extra_files_and_sidecars(prepared) -> None:
    layout, _ = prepared
    rel = {p.relative_to(layout.root).as_posix() for p in dataset_files(layout.root, ["mbpp"])}
    assert {"mbpp/raw_extra/negatives.jsonl", "mbpp/raw_extra/negatives.mutations.jsonl"} <= rel


def test_small_incorrect_sets_cover_the_small_sets_problems(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(split_mod.SMALL, "train_small", ("train", 5))
    layout = _root(tmp_path, [_negative(i, k) for i in range(1, N_PROBLEMS + 1) for k in (1, 2)])
    prepare_source(layout, BUDGET, SplitConfig())
    small = _read(layout.split_file("train", "small"))
    small_bad = _read(layout.split_file("train", "small", incorrect=True))
    assert len(small) == 5 and len(small_bad) == 5  # 10 candidates, capped: one per problem first
    assert {r["metadata"]["task_id"] for r in small_bad} == {r["metadata"]["task_id"] for r in small}
    train_bad = {(r["prompt"], r["response"]) for r in _read(layout.split_file("train", incorrect=True))}
    assert all((r["prompt"], r["response"]) in train_bad for r in small_bad)
    val_small = {r["metadata"]["task_id"] for r in _read(layout.split_file("validation", "small"))}
    val_small_bad = {r["metadata"]["task_id"] for r in _read(layout.split_file("validation", "small", True))}
    assert val_small_bad == val_small


def test_round_robin_order_puts_each_tasks_first_row_first() -> None:
    assert round_robin_order(["a", "a", "b", "c", "b", "a"]) == [0, 2, 3, 1, 4, 5]


def test_extra_row_repeating_another_groups_statement_is_rejected(tmp_path) -> None:
    row = _negative(1, 1) | {"instruction": mbpp_row(_mbpp_record(2))["instruction"]}
    layout = _root(tmp_path, [row])
    report = prepare_source(layout, BUDGET, SplitConfig())
    assert report.extra_kept == 0 and len(report.errors) == 1
    assert "but the statement is that of round 'mbpp-2'" in report.errors[0]
    assert round_of(row["task_id"]) == "mbpp-1"


RAW_CASES = {
    "malformed_json.jsonl": ("<json>", "malformed JSON: Expecting value (column 31)"),
    "non_utf8.jsonl": ("<bytes>", "not valid UTF-8 (byte 0xff at column 21)"),
    "extra_field.jsonl": ("difficulty", "unexpected field"),
    "wrong_type_is_correct.jsonl": ("is_correct", "expected bool, got str"),
    "mismatched_tests.jsonl": ("test_cases", "input/output lengths differ (2 != 1)"),
}


@pytest.mark.parametrize("name", sorted(RAW_CASES))
def test_bad_raw_extra_line_is_rejected_with_its_precise_error(tmp_path, name) -> None:
    field, reason = RAW_CASES[name]
    layout = SourceLayout(tmp_path / "datasets", "codecontests")
    first = _read_first(BAD_ROWS / name)
    base = first | {"output": "x = input()\nprint(x)", "full_text": "Print the number."}
    write_jsonl(layout.raw_file, [base])  # no source/: the raw file is the input
    dst = layout.raw_extra_dir / "labelled.jsonl"
    dst.parent.mkdir(parents=True)
    shutil.copyfile(BAD_ROWS / name, dst)
    report = prepare_source(layout, Budget(TOK, max_tokens=256), SplitConfig())
    assert report.errors == [f"codecontests/raw_extra/labelled.jsonl:2: {field}: {reason}"]
    assert (report.kept, report.rejected, report.extra_rows_in, report.extra_kept) == (2, 1, 2, 1)


def _read_first(path: Path) -> dict:
    return json.loads(path.read_bytes().split(b"\n")[0])


def _rejected_extra_root(tmp_path: Path) -> SourceLayout:
    """One over-length extra row of a problem that has no kept source row (both the length and the split rule
    would reject it) beside valid ones."""
    long_code = "def f(x):\n" + "".join(f"    x = x + {i}\n" for i in range(400)) + "    return x"
    orphan = _negative(N_PROBLEMS + 7, 1) | {"output": long_code}
    return _root(tmp_path, [_negative(1, 1), orphan])


def test_over_length_extra_row_is_rejected_for_its_length(tmp_path) -> None:
    layout = _rejected_extra_root(tmp_path)
    report = prepare_source(layout, BUDGET, SplitConfig())
    assert report.extra_rejected == 1
    assert len(report.errors) == 1 and report.errors[0].startswith("mbpp/raw_extra/")
    assert ":2: output: code alone needs" in report.errors[0] and "matches no kept problem" not in report.errors[0]


def test_validate_and_strict_prepare_fail_on_rejected_extra_rows(tmp_path, capsys) -> None:
    from wmtp_core.cli import main
    from wmtp_core.data.api import prepare_and_validate
    from wmtp_core.data.errors import DatasetError

    layout = _rejected_extra_root(tmp_path)
    root = str(layout.dir.parent)
    common = ["--datasets-root", root, "--sources", "mbpp", "--max-tokens", "512"]
    assert main(["prepare-data", *common]) == 0  # not strict: reported, exit 0
    assert main(["prepare-data", *common, "--strict"]) == 1
    assert "1 raw_extra row(s) rejected (strict)" in capsys.readouterr().err
    assert main(["validate-datasets", *common]) == 1
    err = capsys.readouterr().err
    assert "raw_extra/negatives.jsonl:2: output: code alone needs" in err and "rejected by prepare-data" in err
    assert not (layout.dir.parent / "manifest.json").exists()
    with pytest.raises(DatasetError, match=r"raw_extra row\(s\) rejected \(strict\)"):
        prepare_and_validate(layout.dir.parent, ["mbpp"], paths.CODE_TOKENIZER, max_tokens=512)
