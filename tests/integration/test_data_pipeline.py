"""prepare-data, validate-datasets and the manifest on a small copy of the shipped data; leakage, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.data import small_datasets_root

from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core import paths
from wmtp_core.cli import main
from wmtp_core.data.api import PrepareSettings, prepare_and_validate, run_validate
from wmtp_core.data.collate import MTPCollator, encode_example
from wmtp_core.data.errors import DatasetError
from wmtp_core.data.layout import SourceLayout
from wmtp_core.data.loading import load_processed
from wmtp_core.data.schema import round_of
from wmtp_core.io import sha256_file

SOURCES = ["codecontests", "mbpp", "humaneval"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, object]:
    root = small_datasets_root(tmp_path_factory.mktemp("data"))
    result = prepare_and_validate(root, SOURCES, paths.CODE_TOKENIZER, max_tokens=1024, seed=0)
    return root, result


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_result_counts_and_manifest(prepared) -> None:
    root, result = prepared
    assert result.manifest_path == root / "manifest.json"
    assert result.manifest_sha256 == sha256_file(result.manifest_path)
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["max_tokens"] == 1024 and manifest["sources"] == SOURCES
    for source, c in result.counts.items():
        assert c["in"] == c["kept"] + c["rejected"]
        splits = sum(
            c[f"processed/{s}"] + c[f"processed_incorrect/{s}"] for s in ("train", "validation", "test")
        )
        assert splits == c["kept"]
        assert 0 < c["longest_row_tokens"] <= 1024
        entry = manifest["files"][f"{source}/processed/train.jsonl"]
        assert entry["rows"] == c["processed/train"]
    assert result.counts["codecontests"]["records_in"] == 40 and result.counts["mbpp"]["in"] == 60
    assert result.counts["humaneval"]["processed/test"] == 164
    assert result.counts["mbpp"]["processed/train_small"] <= 100
    assert result.counts["mbpp"]["processed/validation_small"] <= 32


def test_no_round_in_two_splits(prepared) -> None:
    root, _ = prepared
    for source in SOURCES:
        layout = SourceLayout(root, source)
        seen: dict[str, str] = {}
        for split in ("train", "validation", "test"):
            for row in _rows(layout.split_file(split)):
                r = round_of(row["metadata"]["task_id"])
                assert seen.setdefault(r, split) == split


def test_outputs_are_deterministic(prepared, tmp_path) -> None:
    _, first = prepared
    again = prepare_and_validate(
        small_datasets_root(tmp_path), SOURCES, paths.CODE_TOKENIZER, max_tokens=1024, seed=0
    )
    assert again.manifest_sha256 == first.manifest_sha256


def test_verify_detects_tampering_and_leakage(tmp_path) -> None:
    root = small_datasets_root(tmp_path, cc_lines=20, mbpp_lines=30)
    prepare_and_validate(root, ["codecontests", "mbpp"], paths.CODE_TOKENIZER, max_tokens=1024)
    common = ["--datasets-root", str(root)]
    assert main(["validate-datasets", *common, "--verify"]) == 0
    layout = SourceLayout(root, "mbpp")
    leaked = _rows(layout.split_file("train"))[0]
    with layout.split_file("test").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(leaked) + "\n")
    settings = PrepareSettings(
        sources=("codecontests", "mbpp"), tokenizer_model=str(paths.CODE_TOKENIZER), max_tokens=1024
    )
    report, _, _ = run_validate(root, settings, verify=True)
    assert any("split leakage" in e and "train and test" in e for e in report.errors)
    assert any("mbpp/processed/test.jsonl: sha256 differs" in e for e in report.errors)
    assert main(["validate-datasets", *common, "--verify"]) == 1
    assert main(["validate-datasets", *common]) == 1


def test_bad_processed_row_fails_validation(tmp_path, capsys) -> None:
    root = small_datasets_root(tmp_path, cc_lines=10, mbpp_lines=10)
    prepare_and_validate(root, ["mbpp"], paths.CODE_TOKENIZER, max_tokens=1024)
    path = SourceLayout(root, "mbpp").split_file("validation")
    rows = _rows(path)
    rows.append(dict(rows[0], response="print(1)"))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["validate-datasets", "--datasets-root", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:{len(rows)}: response: does not end with '</s>'" in err


def test_missing_required_file_is_an_error(tmp_path, capsys) -> None:
    root = small_datasets_root(tmp_path, cc_lines=5, mbpp_lines=5)
    prepare_and_validate(root, ["mbpp"], paths.CODE_TOKENIZER, max_tokens=1024)
    SourceLayout(root, "mbpp").split_file("test").unlink()
    assert main(["validate-datasets", "--datasets-root", str(root)]) == 2
    assert "mbpp/processed/test.jsonl: required file not found" in capsys.readouterr().err
    (root / "prepare.json").write_text('{"settings": {"max_tokens": 0}}', encoding="utf-8")
    assert main(["validate-datasets", "--datasets-root", str(root)]) == 2
    assert "prepare.json: unreadable settings" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="no mbpp.jsonl source file"):
        prepare_and_validate(tmp_path / "empty", ["mbpp"], paths.CODE_TOKENIZER)


def test_cli_prints_counts_per_split(tmp_path, capsys) -> None:
    root = small_datasets_root(tmp_path, cc_lines=12, mbpp_lines=12)
    args = [
        "--datasets-root",
        str(root),
        "--sources",
        "codecontests,mbpp",
        "--max-tokens",
        "1024",
        "--ratios",
        "0.5,0.25,0.25",
        "--seed",
        "7",
    ]
    assert main(["prepare-data", *args]) == 0
    out = capsys.readouterr().out
    assert "mbpp: records 12 -> raw rows 12" in out and "in 12 = kept 12 + rejected 0" in out
    assert "processed/train=6" in out
    assert main(["validate-datasets", "--datasets-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "mbpp: raw=12  processed/train=6" in out and "wrote " in out
    with pytest.raises(SystemExit) as exc:
        main(["prepare-data", "--datasets-root", str(root), "--ratios", "0.5,0.5"])
    assert exc.value.code == 2
    assert main(["prepare-data", "--datasets-root", str(root), "--ratios", "0.5,0.5,0.5"]) == 2
    assert "ratios: expected 3 non-negative numbers summing to 1" in capsys.readouterr().err


def test_load_and_collate_with_the_real_base_tokenizer(tmp_path) -> None:
    root = small_datasets_root(tmp_path, cc_lines=10, mbpp_lines=20)
    prepare_and_validate(root, ["codecontests", "mbpp"], paths.MISTRAL_TOKENIZER, max_tokens=1024)
    ds = load_processed(root, ["codecontests", "mbpp"], "train", include_incorrect=True)
    small = load_processed(root, ["codecontests", "mbpp"], "train", suffix="small")
    assert 0 < len(small) <= len(ds)
    assert set(ds.column_names) == {"prompt", "response", "metadata"}
    assert set(ds[0]["metadata"]) == {"task_id", "source", "is_correct", "has_tests"}
    assert len(load_processed(root, ["mbpp"], "validation", include_incorrect=True)) > 0
    tok = Tokenizer(paths.MISTRAL_TOKENIZER)
    batch = MTPCollator(tok.pad_id, 4)([encode_example(tok, ds[i], 1024) for i in range(3)])
    ends = batch["attention_mask"].sum(1) - 1
    assert all(int(batch["input_ids"][b, e]) == tok.eos_id for b, e in enumerate(ends.tolist()))
    with pytest.raises(ValueError, match="split/suffix"):
        load_processed(root, ["mbpp"], "train", suffix="tiny")


def test_loading_cache_follows_file_changes(tmp_path) -> None:
    from fixtures.data import processed_row, write_jsonl

    layout = SourceLayout(tmp_path, "mbpp")
    for name in ("train", "validation", "test", "train_small", "validation_small"):
        for incorrect in (False, True):
            write_jsonl(layout.split_file(name, incorrect=incorrect), [])
    path = write_jsonl(layout.split_file("train"), [processed_row(task_id="mbpp-1_A", source="mbpp")])
    assert [r["metadata"]["task_id"] for r in load_processed(tmp_path, ["mbpp"], "train")] == ["mbpp-1_A"]
    write_jsonl(path, [processed_row(task_id=f"mbpp-{i}_A", source="mbpp") for i in (2, 3)])
    assert [r["metadata"]["task_id"] for r in load_processed(tmp_path, ["mbpp"], "train")] == [
        "mbpp-2_A",
        "mbpp-3_A",
    ]
    assert len(load_processed(tmp_path, ["mbpp"], "validation", include_incorrect=True)) == 0
