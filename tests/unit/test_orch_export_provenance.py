"""`wmtp export-mlflow` on a real (temporary sqlite) MLflow store, and the `wmtp provenance` chain."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from wmtp_core.cli import main as wmtp
from wmtp_core.export_mlflow import stage_loss_metrics
from wmtp_core.provenance import chain, format_chain, write_provenance


def test_stage_loss_metrics_groups_by_stage_prefix() -> None:
    names = ["stage1/loss", "stage1/value_loss", "stage2/loss", "stage2/lr", "pass_at_1", "loss"]
    assert stage_loss_metrics(names) == {"stage1": ["stage1/loss", "stage1/value_loss"], "stage2": ["stage2/loss"]}


def _seed_runs(uri: str, tmp_path: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("wmtp", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(exp, run_name="verifiable-flow").info.run_id
    client.log_param(parent, "experiment", "verifiable")
    for stage, losses in (("stage1", [2.0, 1.5, 1.2]), ("stage2", [3.0, 2.5])):
        child = client.create_run(exp, run_name=stage, tags={"mlflow.parentRunId": parent}).info.run_id
        for step, loss in enumerate(losses, start=1):
            client.log_metric(child, f"{stage}/loss", loss, step=step)
            client.log_metric(child, f"{stage}/lr", 1e-4, step=step)
        note = tmp_path / f"{stage}.txt"
        note.write_text(stage)
        client.log_artifact(child, str(note), "notes")
        client.set_terminated(child)
    client.set_terminated(parent)
    return parent


def test_export_mlflow_writes_params_metric_csvs_artifacts_and_loss_pngs(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = _seed_runs(uri, tmp_path)
    out = tmp_path / "export"
    assert wmtp(["export-mlflow", "--run-id", parent, "--out", str(out), "--tracking-uri", uri]) == 0
    index = json.loads((out / "index.json").read_text())
    assert [r["run_name"] for r in index["runs"]] == ["verifiable-flow", "stage1", "stage2"]
    assert [r["parent_run_id"] for r in index["runs"][1:]] == [parent, parent]
    folders = {r["run_name"]: out / r["folder"] for r in index["runs"]}
    assert json.loads((folders["verifiable-flow"] / "params.json").read_text()) == {"experiment": "verifiable"}
    with open(folders["stage1"] / "metrics" / "stage1__loss.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(r["step"]), float(r["value"])) for r in rows] == [(1, 2.0), (2, 1.5), (3, 1.2)]
    png = (folders["stage2"] / "loss_curves" / "stage2.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (folders["stage2"] / "loss_curves" / "stage1.png").exists()
    assert (folders["stage1"] / "artifacts" / "notes" / "stage1.txt").read_text() == "stage1"
    assert "exported 3 run(s)" in capsys.readouterr().out


def test_export_of_unknown_run_is_a_clear_error(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert wmtp(["export-mlflow", "--run-id", "0" * 32, "--out", str(tmp_path / "x"), "--tracking-uri", uri]) == 2
    assert "0" * 32 in capsys.readouterr().out


def _model_dir(root: Path, kind: str, sha: str, derived_from: str | None) -> Path:
    (root / "safetensors").mkdir(parents=True)
    meta = {"kind": kind, "synthetic": True, "created_at": "2026-01-01",
            "files": {"safetensors/model.safetensors": {"sha256": sha, "bytes": 1}},
            "source": {"path": "/src/consolidated", "files": {"consolidated.pth": {"sha256": "f" * 64, "bytes": 1}}},
            "derived_from": {"path": derived_from, "sha256": "b" * 64} if derived_from else None,
            "extra": {}}
    (root / "metadata.json").write_text(json.dumps(meta))
    return root


def test_provenance_chain_walks_run_to_micro_to_base(tmp_path: Path, capsys) -> None:
    base = _model_dir(tmp_path / "base", "base", "b" * 64, None)
    micro = _model_dir(tmp_path / "micro", "micro", "c" * 64, str(base))
    run = tmp_path / "runs" / "verifiable-stage2"
    trained = _model_dir(run / "model", "trained", "d" * 64, None)
    write_provenance(run, {"experiment": "verifiable", "stage": "stage2", "config_hash": "e" * 64,
                           "dataset_manifest_sha256": "a" * 64, "git_commit": "abc123", "git_dirty": "false",
                           "input_model_dir": str(micro), "output_model_dir": str(trained),
                           "prefect_flow_run_id": "flow-run-1", "mlflow_run_id": "m1"})
    entries = chain(trained / "safetensors")
    assert [(e["artifact"], e.get("kind")) for e in entries] == [
        ("run", None), ("model", "trained"), ("model", "micro"), ("model", "base")]
    assert entries[0]["prefect_flow_run_id"] == "flow-run-1" and entries[3]["weights_sha256"] == "b" * 64
    text = format_chain(entries)
    assert "dataset_manifest_sha256: " + "a" * 64 in text and "git_commit: abc123" in text
    assert wmtp(["provenance", str(run)]) == 0
    assert "prefect_flow_run_id: flow-run-1" in capsys.readouterr().out


def test_provenance_of_a_path_without_records_is_an_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="no provenance.json or metadata.json"):
        chain(tmp_path)
    assert wmtp(["provenance", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().out
