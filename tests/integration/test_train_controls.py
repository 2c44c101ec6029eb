"""Position-only controls through the real Trainer: Stage 1 -> Stage 2 with constant_critic / position_matched,
the per-step weight summaries in the Stage 2 history, and the weight-by-distance profile in reports/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import train_config, write_tiny_datasets
from wmtp_core.cli import main
from wmtp_core.train.stages import stage1_mean_value

SUMMARY = ("weight_entropy", "weight_ess", "weight_last10_share")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["constant_critic", "position_matched"])
def test_verifiable_controls_run_and_report_the_profile(tmp_path: Path, mode: str) -> None:
    from wmtp_core.train.run import run_training

    data = write_tiny_datasets(tmp_path / "datasets")
    for path in data.glob("*/processed*/train_small.jsonl"):  # held-out rows for the Stage 1 critic report
        shutil.copy(path, path.with_name("validation_small.jsonl"))
    cfg = train_config(tmp_path, "verifiable", tiny_model_dir(tmp_path), data,
                       overrides=[f"verifiable.mode={mode}", "logging.histogram_every=1000"])
    result = run_training(cfg, run_name=mode)
    history = json.loads(result.history_path.read_text())
    for row in history["stage2"]:
        assert all(0.0 <= row[k] <= 1.0 + 1e-6 for k in SUMMARY), row
    profile = json.loads((result.output_dir / "reports" / "weight_profile.json").read_text())
    assert profile["distance_cap"] == 64 and len(profile["mean_weight"]) == 65
    assert profile["mean_weight"][0] is not None and 0.0 <= profile["last10_share"] <= 1.0
    assert (result.output_dir / "reports" / "weight_profile.png").is_file()
    assert stage1_mean_value(history["stage1"]) is not None
    report = json.loads((result.output_dir / "reports" / "critic_report.json").read_text())
    _check_report(report, "validation_small")
    if mode == "constant_critic":  # the CLI on the exported model + value head writes the same contract
        out = tmp_path / "cli"
        assert main(["critic-report", "--model", str(result.model_dir), "--value-head", str(result.value_head_path),
                     "--dataset", str(data), "--suffix", "small", "--out", str(out), "--max-len", "256"]) == 0
        _check_report(json.loads((out / "reports" / "critic_report.json").read_text()), "validation_small")


def _check_report(report: dict, split: str) -> None:
    assert set(report) == {"schema", "split", "n_rows", "n_localisation_rows", "classification_auroc",
                           "localisation_auroc"}
    assert report["schema"] == "wmtp.critic_report/v1" and report["split"] == split
    assert report["n_rows"] == {"correct": 12, "incorrect": 8}  # 2 sources x (6 correct, 4 mutated)
    assert report["n_localisation_rows"] == 8  # every fixture mutant shares a prefix with its correct row
    for kind in ("classification_auroc", "localisation_auroc"):
        assert set(report[kind]) == {"critic", "constant_critic", "position_matched"}
        assert all(0.0 <= v <= 1.0 for v in report[kind].values())
    assert report["classification_auroc"]["constant_critic"] == 0.5


def test_profile_is_written_and_logged_without_heatmap_samples(tmp_path: Path) -> None:
    """The weight-by-distance profile does not depend on the heatmap probe: `logging.heatmap_samples: 0` (a valid
    setting) once returned before the profile was written."""
    from wmtp_core.train.run import run_training

    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, "baseline", tiny_model_dir(tmp_path), data,
                       overrides=["logging.heatmap_samples=0", "logging.histogram_every=1000"])
    result = run_training(cfg, run_name="no-heatmap")
    reports = result.output_dir / "reports"
    assert not list(reports.glob("token_weights_*.html"))  # no probe ran
    profile = json.loads((reports / "weight_profile.json").read_text())
    assert profile["mean_weight"][0] == pytest.approx(1.0)  # baseline: weight 1 at every distance
    assert 0.0 < profile["last10_share"] < 1.0 and (reports / "weight_profile.png").is_file()
