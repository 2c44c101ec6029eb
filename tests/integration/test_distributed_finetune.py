"""LoRA (peft) under torchrun + FSDP2: 2 gloo ranks on CPU train like 1 process and export the same merged model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures.distributed import run_ranks
from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import CONFIGS, train_config, write_tiny_datasets
from wmtp_core.cli import main as cli_main
from wmtp_core.model.adapter import MetaLlamaMTPAdapter
from wmtp_core.train.run import run_training

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PER_RANK_BATCH, WORLD = 2, 2
LORA = ["model.finetune=lora", "model.lora.rank=4", "optim.lr=0.01", "logging.histogram_every=1000"]


def test_lora_on_two_ranks_matches_one_process(tmp_path: Path) -> None:
    model = tiny_model_dir(tmp_path)
    data = write_tiny_datasets(tmp_path / "datasets")
    sets = [f"paths.datasets_root={data}", f"paths.base_model_dir={model}", f"run.output_root={tmp_path / 'runs'}",
            "train.progress_bar=false", f"train.batch_size={PER_RANK_BATCH}", *LORA]
    argv = ["train", "--config", str(CONFIGS / "defaults.yaml"), "--recipe", str(CONFIGS / "recipe.baseline.yaml"),
            "--preset", "smoke", "--run-name", "two-ranks", "--device", "cpu", "--no-mlflow", "--dataset-suffix",
            "small", *[a for s in sets for a in ("--set", s)]]
    assert run_ranks(cli_main, WORLD, argv, timeout_s=600) == [0, 0]
    two_dir = tmp_path / "runs" / "two-ranks"
    two = json.loads((two_dir / "metrics.json").read_text())["stage2"]

    cfg = train_config(tmp_path, "baseline", model, data,
                       overrides=[*LORA, f"train.batch_size={PER_RANK_BATCH * WORLD}"])
    result = run_training(cfg, run_name="one-process")
    one = json.loads(Path(result.history_path).read_text())["stage2"]
    assert len(one) == len(two) >= 2
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=0, atol=1e-5)
    merged_two = MetaLlamaMTPAdapter.from_pretrained(two_dir / "model").model.state_dict()
    merged_one = MetaLlamaMTPAdapter.from_pretrained(result.model_dir).model.state_dict()
    assert set(merged_two) == set(merged_one) and not any("lora" in k for k in merged_one)
    for key, value in merged_one.items():
        torch.testing.assert_close(merged_two[key], value, rtol=0, atol=1e-4)
