"""`wmtp train` on 2 ranks (gloo, CPU, FSDP2) trains like one process on the same global batch, and its sharded
checkpoint resumes in a single process.

The ranks are forked with exactly the variables torchrun sets and run the CLI entry point `wmtp_core.cli.main`, i.e.
what `torchrun --nproc-per-node=2 -m wmtp_core.cli train ...` runs in each worker, without re-importing torch in fresh
interpreters (minutes on a loaded 2-core machine)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.distributed import run_ranks
from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import CONFIGS, train_config, write_tiny_datasets
from wmtp_core.cli import main as cli_main
from wmtp_core.distributed_checkpoint import is_distributed_checkpoint
from wmtp_core.train.run import run_training

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PER_RANK_BATCH, WORLD = 2, 2


def _stage2(run_dir: Path) -> list[dict[str, float]]:
    return json.loads((run_dir / "metrics.json").read_text())["stage2"]


def _train_argv(tmp_path: Path, model: Path, data: Path, run_name: str) -> list[str]:
    sets = [f"paths.datasets_root={data}", f"paths.base_model_dir={model}", f"run.output_root={tmp_path / 'runs'}",
            "train.progress_bar=false", "logging.histogram_every=1000", f"train.batch_size={PER_RANK_BATCH}"]
    return ["train", "--config", str(CONFIGS / "defaults.yaml"), "--recipe", str(CONFIGS / "recipe.baseline.yaml"),
            "--preset", "smoke", "--run-name", run_name, "--device", "cpu", "--no-mlflow", "--dataset-suffix", "small",
            *[a for s in sets for a in ("--set", s)]]


def test_cli_on_two_ranks_matches_one_process_and_resumes_in_one(tmp_path):
    model = tiny_model_dir(tmp_path)
    data = write_tiny_datasets(tmp_path / "datasets")
    assert run_ranks(cli_main, WORLD, _train_argv(tmp_path, model, data, "two-ranks"), timeout_s=600) == [0, 0]
    two_dir = tmp_path / "runs" / "two-ranks"
    result = json.loads((two_dir / "result.json").read_text())
    assert result["completed"] and Path(result["model_dir"]).is_dir()

    cfg = train_config(tmp_path, "baseline", model, data,
                       overrides=["logging.histogram_every=1000", f"train.batch_size={PER_RANK_BATCH * WORLD}"])
    one = run_training(cfg, run_name="one-process")
    two, ref = _stage2(two_dir), _stage2(one.output_dir)
    assert len(two) == len(ref) >= 2
    for key in ("loss", "denom_labels", "tokens"):
        np.testing.assert_allclose([r[key] for r in two], [r[key] for r in ref], rtol=0, atol=1e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in two], [r["grad_norm"] for r in ref], rtol=1e-5)

    first = two_dir / "checkpoints" / "stage2-step-0000001"
    assert is_distributed_checkpoint(first)
    resumed = run_training(cfg, run_name="two-ranks", resume=str(first))  # 2 ranks -> 1 process
    np.testing.assert_allclose([r["loss"] for r in _stage2(resumed.output_dir)], [r["loss"] for r in ref],
                               rtol=0, atol=1e-5)
