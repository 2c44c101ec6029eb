"""Artifact upload to a local directory target: SHA256 manifest, skip unchanged, verify, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wmtp_core.io import sha256_file
from wmtp_core.upload import MANIFEST_NAME, UploadError, read_local_manifest, upload_artifacts


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "run" / "model"
    (model / "safetensors").mkdir(parents=True)
    (model / "safetensors" / "model.safetensors").write_bytes(b"w" * 100)
    (model / "metadata.json").write_text('{"a": 1}')
    return model


def test_upload_copies_files_and_writes_manifest(tmp_path: Path) -> None:
    model, target = _model(tmp_path), tmp_path / "volume"
    report = upload_artifacts([model], str(target), echo=lambda _: None)
    assert sorted(report.uploaded) == ["model/metadata.json", "model/safetensors/model.safetensors"]
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert manifest["version"] == 1
    for rel, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(target / rel) == report.sha256[rel]
        assert entry["size"] == (target / rel).stat().st_size


def test_second_upload_skips_unchanged_and_reuploads_changed(tmp_path: Path) -> None:
    model, target = _model(tmp_path), tmp_path / "volume"
    upload_artifacts([model], str(target), echo=lambda _: None)
    (model / "metadata.json").write_text('{"a": 2}')
    report = upload_artifacts([model], str(target), echo=lambda _: None)
    assert report.uploaded == ["model/metadata.json"]
    assert report.skipped == ["model/safetensors/model.safetensors"]
    assert (target / "model" / "metadata.json").read_text() == '{"a": 2}'


def test_a_file_missing_at_the_target_is_uploaded_again(tmp_path: Path) -> None:
    model, target = _model(tmp_path), tmp_path / "volume"
    upload_artifacts([model], str(target), echo=lambda _: None)
    (target / "model" / "metadata.json").unlink()
    report = upload_artifacts([model], str(target), echo=lambda _: None)
    assert report.uploaded == ["model/metadata.json"]


def test_corrupt_manifest_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "volume"
    target.mkdir()
    (target / MANIFEST_NAME).write_text("{\n  broken")
    with pytest.raises(UploadError, match=rf"{MANIFEST_NAME}:2: invalid JSON"):
        read_local_manifest(target)
    (target / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(UploadError, match=rf"{MANIFEST_NAME}: top level is an array, expected an object"):
        read_local_manifest(target)


def test_target_that_is_a_file_is_refused(tmp_path: Path) -> None:
    model = _model(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UploadError, match="not a directory"):
        upload_artifacts([model], str(tmp_path / "file"), echo=lambda _: None)
