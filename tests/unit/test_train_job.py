"""The training contract: TrainJob (flags, --job JSON and the flow build the same config) and TrainResult
(the one reader/writer of result.json)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from wmtp_core import paths
from wmtp_core.cli.commands import train as train_cli
from wmtp_core.config import ConfigError, config_hash, load_config
from wmtp_core.train.job import TrainJob, TrainResult, job_from_args

CONFIGS = paths.REPO_ROOT / "configs"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def test_flags_and_job_json_resolve_to_the_config_load_config_builds(tmp_path: Path) -> None:
    argv = ["--config", str(CONFIGS / "defaults.yaml"), "--recipe", str(CONFIGS / "recipe.verifiable.yaml"),
            "--preset", "local-light", "--stages", "stage1", "--use-micro-model", "--dataset-suffix", "small",
            "--device", "cpu", "--no-mlflow", "--set", "optim.lr=0.002", "--set", "data.sources=[mbpp]"]
    # the independent reference: the layering spelled out as load_config's --set texts
    expected = load_config(CONFIGS / "defaults.yaml", CONFIGS / "recipe.verifiable.yaml", "local-light",
                           ["stages=[stage1]", "model.use_micro_model=true", "data.suffix=small", "run.device=cpu",
                            "logging.mlflow=false", "optim.lr=0.002", "data.sources=[mbpp]"])
    from_flags = job_from_args(_args(*argv))
    assert from_flags.experiment == "verifiable" and from_flags.stages == ["stage1"]
    assert config_hash(from_flags.resolve()) == config_hash(expected)
    inline = TrainJob.parse(from_flags.argument())
    assert inline == from_flags and config_hash(inline.resolve()) == config_hash(expected)
    file = tmp_path / "job.json"
    file.write_text(from_flags.model_dump_json())
    assert TrainJob.parse(str(file)) == from_flags


def test_registry_recipe_is_the_default_and_a_mismatch_is_refused(tmp_path: Path) -> None:
    job = TrainJob(experiment="rho1")
    assert job.recipe_path == "configs/recipe.rho1.yaml" and job.resolve(paths.REPO_ROOT).experiment == "rho1"
    with pytest.raises(ConfigError, match="recipe.baseline.yaml: field experiment: 'baseline', but the job is for"):
        TrainJob(experiment="rho1", recipe=str(CONFIGS / "recipe.baseline.yaml")).resolve()


def test_bad_jobs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--job: field presett: Extra inputs are not permitted"):
        TrainJob.parse('{"experiment": "baseline", "presett": "smoke"}')
    with pytest.raises(ConfigError, match="--job: field experiment: Input should be 'baseline', 'verifiable' or"):
        TrainJob.parse('{"experiment": "rho1_weighted"}')
    with pytest.raises(ConfigError, match="--job: invalid JSON"):
        TrainJob.parse('{"experiment": ')
    with pytest.raises(ConfigError, match="no-such.json: not found"):
        TrainJob.parse(str(tmp_path / "no-such.json"))
    with pytest.raises(ConfigError, match=r"--set optim.lr=-1: field optim.lr"):
        TrainJob(experiment="baseline", overrides={"optim.lr": -1}).resolve(paths.REPO_ROOT)
    with pytest.raises(ConfigError, match="stage1 not a stage of 'baseline'"):
        TrainJob(experiment="baseline", stages=["stage1"]).resolve(paths.REPO_ROOT)


def test_cli_refuses_job_plus_flags_and_neither(capsys: pytest.CaptureFixture) -> None:
    assert train_cli.main(_args("--job", '{"experiment": "baseline"}', "--preset", "smoke")) == 2
    assert "--job: give the whole job in it, not also --preset" in capsys.readouterr().err
    assert train_cli.main(_args()) == 2
    assert "one of --job or --recipe is required" in capsys.readouterr().err


def test_flow_job_is_resolved_before_anything_runs() -> None:
    from flows.wmtp import train_job

    job = train_job("verifiable", "smoke", True, "small", "cpu", ["data.sources=[mbpp]", "data.max_len=640"])
    assert job.overrides == {"train.progress_bar": False, "data.sources": ["mbpp"], "data.max_len": 640}
    with pytest.raises(ConfigError, match="--set train.batch_sise=2: field train.batch_sise"):
        train_job("baseline", "smoke", True, "small", "cpu", ["train.batch_sise=2"])
    with pytest.raises(ConfigError, match="no-such-preset.yaml: config file not found"):
        train_job("baseline", "no-such-preset", True, "small", "cpu", [])


def test_train_result_round_trip_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = TrainResult(output_dir=out, checkpoint_dir=out / "checkpoints", model_dir=None, value_head_path=None,
                         mlflow_run_id="r1", final_metrics={"stage2/loss": 1.25}, weights_sha256=None,
                         config_hash="c" * 64, completed=False, result_path=out / "result.json",
                         history_path=out / "metrics.json")
    result.write()
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk["output_dir"] == str(out) and on_disk["final_metrics"] == {"stage2/loss": 1.25}
    assert TrainResult.read(out / "result.json") == result
    (out / "result.json").write_text(json.dumps({**on_disk, "completed": "maybe"}))
    with pytest.raises(ValueError, match=r"result.json: field completed: Input should be a valid boolean"):
        TrainResult.read(out / "result.json")
    with pytest.raises(ValueError, match="field config_hash: Field required"):
        TrainResult.from_mapping({k: v for k, v in on_disk.items() if k != "config_hash"}, "volume://x/result.json")
