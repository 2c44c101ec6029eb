"""Storage sync through the real SDK's volume federation against the fake VESSL API + its S3 endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.fake_vessl_server import FakeVesslServer, fast_settings, write_env_file
from wmtp_core.cli import main as wmtp_main
from wmtp_core.vessl_client import sync as sync_mod
from wmtp_core.vessl_client.retry import VesslApiError
from wmtp_core.vessl_client.storage import VolumeRef, VolumeStore
from wmtp_core.vessl_client.sync import MANIFEST_NAME, SyncError, download_from_volume, sync_to_volume

pytestmark = pytest.mark.integration
TOKEN = "tok-storage-9a8b7c"


@pytest.fixture
def server(tmp_path: Path):
    with FakeVesslServer(tmp_path / "fake", token=TOKEN) as srv:
        yield srv


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    models = tmp_path / "src" / "models"
    datasets = tmp_path / "src" / "datasets"
    (models / "micro" / "safetensors").mkdir(parents=True)
    (models / "micro" / "safetensors" / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (models / "micro" / "metadata.json").write_text('{"name": "micro"}')
    (datasets / "mbpp").mkdir(parents=True)
    (datasets / "mbpp" / "train.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    return [models, datasets]


def _puts(server: FakeVesslServer) -> list[str]:
    return [p for m, p in server.requests if m == "PUT" and not p.endswith(MANIFEST_NAME)]


def test_upload_list_skip_unchanged_and_reupload_changed(server, sources, tmp_path) -> None:
    store = VolumeStore(fast_settings(server))
    target = VolumeRef.parse("volume://wmtp-storage/wmtp-models/v1")
    first = sync_to_volume(store, sources, target, verify="hash", echo=lambda s: None)
    assert sorted(first.uploaded) == ["datasets/mbpp/train.jsonl", "models/micro/metadata.json",
                                      "models/micro/safetensors/model.safetensors"]
    listing = store.list(target)
    assert listing["models/micro/safetensors/model.safetensors"] == 10240 and MANIFEST_NAME in listing
    remote = server.volume_dir("volume://wmtp-storage/wmtp-models/v1")
    assert (remote / "datasets/mbpp/train.jsonl").read_bytes() == (sources[1] / "mbpp/train.jsonl").read_bytes()
    manifest = json.loads((remote / MANIFEST_NAME).read_text())["files"]
    assert manifest["models/micro/metadata.json"]["size"] == len('{"name": "micro"}')

    n_puts = len(_puts(server))
    second = sync_to_volume(store, sources, target, echo=lambda s: None)
    assert second.uploaded == [] and len(second.skipped) == 3 and len(_puts(server)) == n_puts

    (sources[0] / "micro" / "metadata.json").write_text('{"name": "micro", "v": 2}')
    third = sync_to_volume(store, sources, target, echo=lambda s: None)
    assert third.uploaded == ["models/micro/metadata.json"] and len(_puts(server)) == n_puts + 1


def test_dry_run_prints_plan_and_uploads_nothing(server, sources) -> None:
    store = VolumeStore(fast_settings(server))
    printed: list[str] = []
    report = sync_to_volume(store, sources, VolumeRef.parse("volume://s/v"), dry_run=True, echo=printed.append)
    assert len(report.uploaded) == 3 and _puts(server) == []
    assert "would upload models/micro/metadata.json (17 B)" in printed


def test_remote_file_changed_behind_our_back_is_reuploaded(server, sources) -> None:
    store = VolumeStore(fast_settings(server))
    target = VolumeRef.parse("volume://s/v")
    sync_to_volume(store, sources, target, echo=lambda s: None)
    (server.volume_dir("volume://s/v") / "datasets/mbpp/train.jsonl").write_text("truncated")
    again = sync_to_volume(store, sources, target, echo=lambda s: None)
    assert again.uploaded == ["datasets/mbpp/train.jsonl"]


def test_hash_verification_catches_corruption(server, sources, monkeypatch) -> None:
    store = VolumeStore(fast_settings(server))
    real_upload = store.upload_file

    def corrupting_upload(local: Path, ref: VolumeRef, rel: str) -> None:
        real_upload(local, ref, rel)
        if rel.endswith("train.jsonl"):  # same size, different bytes: only a hash check can see it
            path = server.volume_dir("volume://s/v") / rel
            path.write_bytes(path.read_bytes().upper())

    monkeypatch.setattr(store, "upload_file", corrupting_upload)
    with pytest.raises(SyncError, match="datasets/mbpp/train.jsonl: remote SHA256 differs"):
        sync_to_volume(store, sources, VolumeRef.parse("volume://s/v"), verify="hash", echo=lambda s: None)


def test_interrupted_sync_resumes(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sync_mod, "FLUSH_EVERY_FILES", 4)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no botocore-internal retries: our retry layer must handle it
    src = tmp_path / "many"
    src.mkdir()
    for i in range(10):
        (src / f"f{i:02d}.bin").write_bytes(bytes([i]) * (100 + i))
    store = VolumeStore(fast_settings(server, max_attempts=2))
    server.inject("PUT", r"/many/f05\.bin$", count=1, status=503)  # one blip: retried by us
    server.inject("PUT", r"/many/f06\.bin$", count=5, status=503)  # then the "network" dies at the 7th file
    with pytest.raises(VesslApiError, match=r"upload many/f06.bin .* after 2 attempt\(s\) \(status=503\)"):
        sync_to_volume(store, [src], VolumeRef.parse("volume://s/v"), echo=lambda s: None)
    assert server.faults[0].remaining == 0 and server.faults[1].remaining == 3
    server.faults.clear()  # the network is back
    resumed = sync_to_volume(store, [src], VolumeRef.parse("volume://s/v"), echo=lambda s: None)
    assert resumed.skipped == [f"many/f{i:02d}.bin" for i in range(4)]  # flushed before the failure
    assert resumed.uploaded == [f"many/f{i:02d}.bin" for i in range(4, 10)]


def test_download_counterpart_verifies_and_skips(server, sources, tmp_path) -> None:
    store = VolumeStore(fast_settings(server))
    ref = VolumeRef.parse("volume://s/v/run-1")
    sync_to_volume(store, sources, ref, echo=lambda s: None)
    dest = tmp_path / "pulled"
    first = download_from_volume(store, ref, dest, echo=lambda s: None)
    assert len(first.uploaded) == 3 and len(first.verified) == 3
    assert (dest / "models/micro/safetensors/model.safetensors").read_bytes() == bytes(range(256)) * 40
    second = download_from_volume(store, ref, dest, echo=lambda s: None)
    assert second.uploaded == [] and len(second.skipped) == 3
    (server.volume_dir("volume://s/v/run-1") / "models/micro/metadata.json").write_text('{"name": "MICRO"}')
    (dest / "models/micro/metadata.json").unlink()
    with pytest.raises(SyncError, match="metadata.json: SHA256 differs"):
        download_from_volume(store, ref, dest, echo=lambda s: None)


def test_cli_sync_and_fetch(server, sources, tmp_path, capsys) -> None:
    env = write_env_file(tmp_path / ".env.vessl", server)
    args = ["sync-storage", *map(str, sources), "--to", "volume://s/cli", "--env-file", str(env)]
    assert wmtp_main([*args, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["dry_run"] is True
    assert wmtp_main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(report["uploaded"]) == 3 and report["verified"] == 3
    assert wmtp_main(["fetch-storage", "volume://s/cli/datasets", "--to", str(tmp_path / "d"),
                      "--env-file", str(env)]) == 0
    assert (tmp_path / "d/mbpp/train.jsonl").is_file()
    assert TOKEN not in capsys.readouterr().out


def test_cli_errors_are_one_clear_line(server, tmp_path, capsys, monkeypatch) -> None:
    for key in ("VESSL_ACCESS_TOKEN", "VESSL_ORGANIZATION", "VESSL_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    missing_env = tmp_path / "none.env"
    assert wmtp_main(["sync-storage", str(tmp_path), "--to", "volume://s/v", "--env-file", str(missing_env)]) == 2
    assert "missing VESSL_ACCESS_TOKEN, VESSL_ORGANIZATION, VESSL_PROJECT" in capsys.readouterr().err
    env = write_env_file(tmp_path / ".env.vessl", server)
    assert wmtp_main(["sync-storage", str(tmp_path / "nope"), "--to", "volume://s/v", "--env-file", str(env)]) == 2
    assert "nope: source does not exist" in capsys.readouterr().err
    assert wmtp_main(["sync-storage", str(tmp_path), "--to", "s3://bucket/x", "--env-file", str(env)]) == 2
    assert "expected volume://<storage>/<volume>" in capsys.readouterr().err
