"""Shipped hardware presets fit their GPUs for every experiment at 7B_1T_4 shape, per the memory plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from wmtp_core.config import load_config
from wmtp_core.plan import inputs_from_config, job_memory_check, verdict
from wmtp_core.plan.advice import MemoryPlanError

ROOT = Path(__file__).resolve().parents[2]
PRESET_GPUS = {"a100x1": 1, "a100x4": 4}  # the VESSL presets and the A100-80GB count they are written for
RECIPES = ("baseline", "verifiable", "rho1")


@pytest.mark.parametrize("preset", sorted(PRESET_GPUS))
@pytest.mark.parametrize("recipe", RECIPES)
def test_preset_fits_its_gpus(preset: str, recipe: str) -> None:
    cfg = load_config(ROOT / "configs/defaults.yaml", ROOT / f"configs/recipe.{recipe}.yaml", preset)
    v = job_memory_check(cfg, PRESET_GPUS[preset], 80.0, shape="7B_1T_4")
    assert v.fits and v.plan.peak <= v.usable
    assert v.plan.counts.total >= 6_738_415_616  # 7B_1T_4 counted on the meta device


def test_default_full_finetune_does_not_fit_one_a100() -> None:
    cfg = load_config(ROOT / "configs/defaults.yaml", ROOT / "configs/recipe.baseline.yaml")
    with pytest.raises(MemoryPlanError, match="options that fit"):
        job_memory_check(cfg, 1, 80.0, shape="7B_1T_4")
    assert not verdict(inputs_from_config(cfg, 1, shape="7B_1T_4"), 80.0).fits


def test_unknown_dims_fail_closed(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs/defaults.yaml", ROOT / "configs/recipe.baseline.yaml",
                      overrides=[f"paths.base_model_dir={tmp_path}"])
    with pytest.raises(MemoryPlanError, match="params.json"):
        job_memory_check(cfg, 4, 80.0)


def test_check_train_job_resolves_the_job_with_the_model_dims(tmp_path: Path) -> None:
    import json
    from dataclasses import asdict

    from wmtp_core.plan import SHAPES, check_train_job
    from wmtp_core.train.job import TrainJob

    model = tmp_path / "model"
    (model / "configs").mkdir(parents=True)  # the artifacts layout: <model>/configs/params.json
    (model / "configs" / "params.json").write_text(json.dumps(asdict(SHAPES["7B_1T_4"])))
    job = TrainJob(experiment="baseline", config=str(ROOT / "configs/defaults.yaml"),
                   recipe=str(ROOT / "configs/recipe.baseline.yaml"))
    with pytest.raises(MemoryPlanError, match="DOES NOT FIT"):
        check_train_job(job, 1, 80.0, model)
    assert check_train_job(job.model_copy(update={"preset": "a100x1"}), 1, 80.0, model).fits
    lora = {"model.finetune": "lora", "model.activation_checkpointing": True}
    assert check_train_job(job.model_copy(update={"overrides": lora}), 1, 80.0, model).fits
    with pytest.raises(MemoryPlanError, match="params.json"):
        check_train_job(job, 4, 80.0, tmp_path / "missing")


def test_plan_reads_a_real_model_dir(tmp_path: Path) -> None:
    """Dims from a converted model dir (tiny fixture), counted exactly as the loaded model's parameters."""
    from tests.fixtures.models import tiny_model_dir
    from wmtp_core.model.adapter import MetaLlamaMTPAdapter

    model = tiny_model_dir(tmp_path)
    cfg = load_config(ROOT / "configs/defaults.yaml", ROOT / "configs/recipe.baseline.yaml",
                      overrides=[f"paths.base_model_dir={model}"])
    v = verdict(inputs_from_config(cfg, 1), 80.0)
    loaded = MetaLlamaMTPAdapter.from_pretrained(model).model
    assert v.fits and v.plan.counts.total == sum(p.numel() for p in loaded.parameters())
