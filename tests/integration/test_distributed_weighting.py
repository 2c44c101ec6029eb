"""Verifiable Critic and Rho-1 on 2 ranks (gloo, CPU, FSDP2) weight and train like one process on the same global
batch: the critic's z-score / softmax / clipping and Rho-1's top-k% span every rank's rows (over_global_batch).

Before the weighting statistics were global, 2 ranks differed from 1 process by ~1e-4 in the Stage 2 loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.distributed import run_ranks
from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import CONFIGS, train_config, write_tiny_datasets
from wmtp_core.cli import main as cli_main
from wmtp_core.train.run import run_training

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PER_RANK_BATCH, WORLD = 2, 2


def _history(run_dir: Path) -> dict[str, list[dict[str, float]]]:
    return json.loads((run_dir / "metrics.json").read_text())


def _argv(tmp_path: Path, recipe: str, sets: list[str]) -> list[str]:
    return ["train", "--config", str(CONFIGS / "defaults.yaml"), "--recipe", str(CONFIGS / f"recipe.{recipe}.yaml"),
            "--preset", "smoke", "--run-name", "two-ranks", "--device", "cpu", "--no-mlflow", "--dataset-suffix",
            "small", *[a for s in sets for a in ("--set", s)]]


@pytest.mark.parametrize("experiment", ["verifiable", "rho1"])
def test_weighted_experiment_on_two_ranks_matches_one_process(tmp_path, experiment):
    recipe = experiment
    model = tiny_model_dir(tmp_path)
    data = write_tiny_datasets(tmp_path / "datasets")
    sets = [f"paths.datasets_root={data}", f"paths.base_model_dir={model}", f"run.output_root={tmp_path / 'runs'}",
            "train.progress_bar=false", "logging.histogram_every=1000"]
    reference = None
    if experiment == "rho1":
        reference = tiny_model_dir(tmp_path, seed=1, name="tiny-ref")
        sets.append(f"paths.reference_model_dir={reference}")
    argv = _argv(tmp_path, recipe, [*sets, f"train.batch_size={PER_RANK_BATCH}"])
    assert run_ranks(cli_main, WORLD, argv, timeout_s=600) == [0, 0]
    two = _history(tmp_path / "runs" / "two-ranks")

    cfg = train_config(tmp_path, recipe, model, data, reference_dir=reference,
                       overrides=["logging.histogram_every=1000", f"train.batch_size={PER_RANK_BATCH * WORLD}"])
    one = _history(run_training(cfg, run_name="one-process").output_dir)
    assert set(two) == set(one) and len(two["stage2"]) == len(one["stage2"]) >= 2
    for stage in one:
        for key in {"loss", "denom_labels", "tokens"} & set(one[stage][0]):
            np.testing.assert_allclose([r[key] for r in two[stage]], [r[key] for r in one[stage]], rtol=0,
                                       atol=1e-5, err_msg=f"{stage} {key}")
    stage2 = one["stage2"]
    weight_key = "weight_max" if experiment == "verifiable" else "rho1_selected_frac"
    np.testing.assert_allclose([r[weight_key] for r in two["stage2"]], [r[weight_key] for r in stage2],
                               rtol=0, atol=1e-6)
    # summation order differs (padded shapes, all-reduce): measured <= 1.2e-5 relative, baseline <= 1e-5
    np.testing.assert_allclose([r["grad_norm"] for r in two["stage2"]], [r["grad_norm"] for r in stage2],
                               rtol=5e-5)
