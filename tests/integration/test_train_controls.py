"""Position-only controls through the real Trainer: Stage 1 -> Stage 2 with constant_critic / position_matched,
the per-step weight summaries in the Stage 2 history, and the weight-by-distance profile in reports/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import train_config, write_tiny_datasets
from wmtp_core.train.stages import stage1_mean_value

SUMMARY = ("weight_entropy", "weight_ess", "weight_last10_share")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["constant_critic", "position_matched"])
def test_verifiable_controls_run_and_report_the_profile(tmp_path: Path, mode: str) -> None:
    from wmtp_core.train.run import run_training

    data = write_tiny_datasets(tmp_path / "datasets")
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
