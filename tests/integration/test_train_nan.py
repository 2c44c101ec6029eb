"""NaN guard end to end: a non-finite loss stops run_training naming the step; the last good checkpoint stays."""

import json
from pathlib import Path

import pytest
import torch

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import train_config, write_tiny_datasets
from wmtp_core.io import sha256_file
from wmtp_core.train import stages
from wmtp_core.train.loop import NonFiniteError
from wmtp_core.train.run import run_training
from wmtp_core.train.state import list_checkpoints


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = stages.weighted_mtp_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # grad_accum=1: the third micro-batch is optimizer step 3
            out.loss = torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(stages, "weighted_mtp_loss", poisoned)
    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, "baseline", tiny_model_dir(tmp_path), data,
                       overrides=["train.max_steps=4", "train.grad_accum=1", "logging.histogram_every=1000"])
    with pytest.raises(NonFiniteError, match=r"stage2 step 3: loss is nan") as err:
        run_training(cfg, run_name="nan")
    out = tmp_path / "runs" / "nan"
    ckpts = list_checkpoints(out / "checkpoints", ["stage2"])
    assert [c.step for c in ckpts] == [1, 2] and str(ckpts[-1].path) in str(err.value)
    manifest = json.loads((ckpts[-1].path / "checkpoint.json").read_text())
    assert all(sha256_file(ckpts[-1].path / n) == e["sha256"] for n, e in manifest["files"].items())
    assert not (out / "result.json").exists() and not (out / "model").exists()
