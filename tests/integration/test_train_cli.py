"""`wmtp train` for all three recipes with --preset local-light --use-micro-model --dataset-suffix small,
logging to a temporary MLflow sqlite store: the runs, their metrics and the heatmap artifact exist."""

import json
import math
from pathlib import Path

import pytest

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import CONFIGS, write_tiny_datasets
from wmtp_core.cli import main


def _train(recipe: str, tmp_path: Path, micro: Path, ref: Path, data: Path, *extra: str) -> int:
    return main(["train", "--config", str(CONFIGS / "defaults.yaml"), "--recipe", str(CONFIGS / recipe),
                 "--preset", "local-light", "--use-micro-model", "--dataset-suffix", "small", "--device", "cpu",
                 "--run-name", recipe.split(".")[1], "--set", f"paths.micro_model_dir={micro}",
                 "--set", f"paths.reference_model_dir={ref}", "--set", f"paths.datasets_root={data}",
                 "--set", f"run.output_root={tmp_path / 'runs'}", "--set", "train.progress_bar=false", *extra])


@pytest.mark.slow
def test_train_all_recipes_log_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("WMTP_PARENT_RUN_ID", raising=False)
    micro, ref = tiny_model_dir(tmp_path), tiny_model_dir(tmp_path, seed=1, name="reference")
    data = write_tiny_datasets(tmp_path / "datasets")
    client = MlflowClient(uri)
    for recipe, stage, extra in (("recipe.baseline.yaml", "stage2", ()),
                                 ("recipe.verifiable.yaml", "stage1", ("--stages", "stage1")),
                                 ("recipe.rho1.yaml", "stage2", ())):
        assert _train(recipe, tmp_path, micro, ref, data, *extra) == 0
        result_path = Path(capsys.readouterr().out.strip().splitlines()[-1])
        result = json.loads(result_path.read_text())
        run = client.get_run(result["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["wmtp.config_hash"] == result["config_hash"]
        assert run.data.tags["wmtp.model_sha256"] != "unknown" and "wmtp.git.commit" in run.data.tags
        assert run.data.params["train.batch_size"] == "1" and run.data.params["model.use_micro_model"] == "True"
        losses = client.get_metric_history(run.info.run_id, f"{stage}/loss")
        assert len(losses) == 2 and all(math.isfinite(m.value) and m.value >= 0 for m in losses)  # 0.1 epoch, batch 1
        reports = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "reports")}
        assert "token_weights_final.html" in reports and "histograms_final.png" in reports
        assert {f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")} == {
            "checkpoints/checkpoints.json"}
        local = client.download_artifacts(run.info.run_id, "reports/token_weights_final.html", str(tmp_path))
        assert 'class="tok"' in Path(local).read_text()
        assert Path(result["model_dir"], "metadata.json").is_file() and len(result["weights_sha256"]) == 64
    # --stages stage1 trains verifiable's Stage 1 only: a value head, no stage2 metrics
    ver = json.loads((tmp_path / "runs" / "verifiable" / "result.json").read_text())
    assert ver["value_head_path"] and not any(k.startswith("stage2/") for k in ver["final_metrics"])


def test_train_cli_reports_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--config", str(CONFIGS / "defaults.yaml"), "--recipe", str(CONFIGS / "recipe.baseline.yaml"),
                 "--set", "train.batch_sise=2"])
    assert code == 2
    assert "--set train.batch_sise=2: field train.batch_sise: Extra inputs are not permitted" in capsys.readouterr().err


def test_exported_model_loads(tmp_path: Path) -> None:
    from tests.fixtures.train import train_config
    from wmtp_core.model.adapter import MetaLlamaMTPAdapter
    from wmtp_core.train.run import TrainResult, run_training

    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, "baseline", tiny_model_dir(tmp_path), data,
                       overrides=["train.max_steps=1", "logging.histogram_every=1000"])
    result = run_training(cfg, run_name="export")
    assert TrainResult.read(result.result_path) == result
    loaded = MetaLlamaMTPAdapter.from_pretrained(result.model_dir)
    assert loaded.metadata["kind"] == "trained" and loaded.metadata["extra"]["config_hash"] == result.config_hash


def test_rho1_micro_finds_its_reference_at_the_standard_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    """The design's command for Rho-1 with --use-micro-model, no reference path given: missing -> the error names
    the one command that builds it; present at storage/models/micro-ref-mtp -> the run uses it."""
    from wmtp_core import paths

    standard = tmp_path / "models" / "micro-ref-mtp"
    monkeypatch.setattr(paths, "MICRO_REFERENCE_DIR", standard)
    micro, data = tiny_model_dir(tmp_path), write_tiny_datasets(tmp_path / "datasets")
    argv = ["train", "--config", str(CONFIGS / "defaults.yaml"), "--recipe", str(CONFIGS / "recipe.rho1.yaml"),
            "--preset", "local-light", "--use-micro-model", "--dataset-suffix", "small", "--device", "cpu",
            "--no-mlflow", "--run-name", "rho1", "--set", f"paths.micro_model_dir={micro}",
            "--set", f"paths.datasets_root={data}", "--set", f"run.output_root={tmp_path / 'runs'}",
            "--set", "train.max_steps=1", "--set", "train.progress_bar=false"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{standard}/metadata.json missing" in err and "`wmtp build-micro --reference`" in err
    tiny_model_dir(tmp_path / "models", seed=1, name="micro-ref-mtp")  # what that command leaves there
    assert main(argv) == 0
    result = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert result["final_metrics"]["stage2/loss"] > 0


def test_build_micro_reference_uses_the_flow_reference_recipe() -> None:
    """`wmtp build-micro --reference` builds what the flow's build-reference step builds: seed 1, half FFN width."""
    import argparse

    from wmtp_core.cli.commands import build_micro

    parser = argparse.ArgumentParser()
    build_micro.register(parser.add_subparsers())
    for plan, ffn in (("default", 512), ("tiny", 64)):
        built = build_micro.plan_from_args(parser.parse_args(["build-micro", "--reference", "--plan", plan]))
        assert (built.seed, built.ffn_hidden_dim) == (1, ffn)
    plain = build_micro.plan_from_args(parser.parse_args(["build-micro", "--plan", "tiny"]))
    assert (plain.seed, plain.ffn_hidden_dim) == (0, 128)
