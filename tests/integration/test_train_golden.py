"""Golden losses: each experiment's first optimizer steps on a fixed seed match recorded values.

The values were recorded from this code on CPU (torch 2.x, one thread) with the tiny fixture model
(tests/fixtures/models.py: synthetic seed-0 weights, the shipped 8k code tokenizer) and the fixture rows of
tests/fixtures/train.py. To regenerate after an intended change of the model, data, loss or weighting:

    uv run python -c "import json, sys, pathlib, torch; torch.set_num_threads(1); sys.path.insert(0, '.');
    from tests.integration.test_train_golden import run_golden;
    [print(e, json.dumps(run_golden(pathlib.Path('/tmp/golden') / e, e))) for e in
     ('baseline', 'verifiable', 'rho1')]"

and paste the printed lists into GOLDEN (explain the change in the commit message).
"""

from pathlib import Path

import pytest

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import train_config, write_tiny_datasets
from wmtp_core.train.run import run_training

GOLDEN: dict[str, dict[str, list[float]]] = {
    "baseline": {"stage2": [8.987846, 8.74182, 8.637548]},
    "verifiable": {"stage1": [0.240742, 0.420644], "stage2": [8.998733, 8.728187, 8.595734]},
    "rho1": {"stage2": [9.035041, 8.965184, 8.944415]},
}

OVERRIDES = ["train.max_steps=3", "stage1.max_steps=2", "train.grad_accum=1", "optim.lr=0.001",
             "logging.histogram_every=1000", "train.checkpoint_every=1000"]


def run_golden(tmp_path: Path, experiment: str) -> dict[str, list[float]]:
    import json

    tmp_path.mkdir(parents=True, exist_ok=True)
    model = tiny_model_dir(tmp_path)
    ref = tiny_model_dir(tmp_path, seed=1, name="reference") if experiment == "rho1" else None
    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, experiment, model, data, reference_dir=ref, overrides=OVERRIDES)
    result = run_training(cfg, run_name="golden")
    history = json.loads(Path(result.history_path).read_text())
    return {stage: [round(row["loss"], 6) for row in rows] for stage, rows in history.items()}


@pytest.mark.parametrize("experiment", ["baseline", "verifiable", "rho1"])
def test_first_steps_match_recorded_losses(tmp_path: Path, experiment: str) -> None:
    got = run_golden(tmp_path, experiment)
    expected = GOLDEN[experiment]
    assert set(got) == set(expected)
    for stage, values in expected.items():
        assert got[stage] == pytest.approx(values, rel=2e-4, abs=1e-5), stage
