"""Resume exactness: N steps in one go == N/2 steps, stop, `--resume auto`, finish (same losses, same weights)."""

from pathlib import Path

import pytest

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import train_config, write_tiny_datasets
from wmtp_core.train.run import RunSetupError, run_training


def _losses(result) -> dict[str, list[float]]:
    import json

    history = json.loads(Path(result.history_path).read_text())
    return {stage: [row["loss"] for row in rows] for stage, rows in history.items()}


@pytest.mark.parametrize(("experiment", "extra", "stop_at"), [
    ("baseline", ["train.max_steps=4", "train.grad_accum=1"], "stage2:2"),
    ("verifiable", ["train.max_steps=3", "stage1.max_steps=2", "verifiable.mode=random_matched"], "stage2:1"),
])
def test_resume_continues_exactly(tmp_path: Path, experiment: str, extra: list[str], stop_at: str) -> None:
    model = tiny_model_dir(tmp_path)
    data = write_tiny_datasets(tmp_path / "datasets")
    overrides = [*extra, "logging.histogram_every=1000", "train.checkpoint_every=1000"]
    cfg = train_config(tmp_path, experiment, model, data, overrides=overrides)

    full = run_training(cfg, run_name="full")
    part = run_training(cfg, run_name="split", stop_at=stop_at)
    assert not part.completed and part.model_dir is None
    with pytest.raises(RunSetupError, match="already holds checkpoints"):
        run_training(cfg, run_name="split")
    resumed = run_training(cfg, run_name="split", resume="auto")

    assert resumed.completed
    assert _losses(resumed) == _losses(full)  # bit-identical on CPU
    assert len(_losses(full)["stage2"]) == int(extra[0].split("=")[1])
    assert resumed.weights_sha256 == full.weights_sha256
