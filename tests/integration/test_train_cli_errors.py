"""`wmtp train` reports user errors as one `error:` line with exit code 1, never a traceback: a data selection
without rows (naming the files read) and `verifiable.mode: constant_critic` without Stage 1 history."""

from pathlib import Path

import pytest

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import CONFIGS, write_tiny_datasets
from wmtp_core.cli import main


def _train(recipe: str, tmp_path: Path, data: Path, *extra: str) -> int:
    return main(["train", "--config", str(CONFIGS / "defaults.yaml"), "--recipe", str(CONFIGS / recipe),
                 "--preset", "local-light", "--use-micro-model", "--dataset-suffix", "small", "--device", "cpu",
                 "--no-mlflow", "--run-name", "err", "--set", f"paths.micro_model_dir={tiny_model_dir(tmp_path)}",
                 "--set", f"paths.datasets_root={data}", "--set", f"run.output_root={tmp_path / 'runs'}",
                 "--set", "train.max_steps=1", "--set", "train.progress_bar=false", *extra])


def _one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]  # stderr also has progress bars
    assert "Traceback" not in err, err
    assert len(errors) == 1, err
    return errors[0]


def test_no_rows_is_one_error_line_naming_the_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_tiny_datasets(tmp_path / "datasets")
    for source in ("codecontests", "mbpp"):
        (data / source / "processed" / "train_small.jsonl").write_text("")
    assert _train("recipe.baseline.yaml", tmp_path, data) == 1
    line = _one_error_line(capsys)
    assert "data: no rows" in line and "split 'train' suffix 'small'" in line
    assert "mbpp/processed/train_small.jsonl: 0 rows" in line and "codecontests/processed/train_small.jsonl" in line


def test_constant_critic_without_stage1_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_tiny_datasets(tmp_path / "datasets")
    code = _train("recipe.verifiable.yaml", tmp_path, data, "--stages", "stage2",
                  "--set", "verifiable.mode=constant_critic")
    assert code == 1
    line = _one_error_line(capsys)
    assert "verifiable.mode: constant_critic needs the Stage 1 mean value" in line and "no Stage 1 history" in line
