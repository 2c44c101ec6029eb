"""Resume integrity (issue 14 items 3, 4, 8): a corrupted checkpoint is never loaded (`--resume auto` falls back to
the newest intact one and says so), a changed training config is refused naming the keys, and a diverged update
(lr 1e30: finite loss, weights of 1e30) is never written as a checkpoint."""

import json
from pathlib import Path

import pytest
import yaml

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import train_config, write_tiny_datasets
from wmtp_core.train.loop import NonFiniteError
from wmtp_core.train.run import RunSetupError, run_training
from wmtp_core.train.state import list_checkpoints, verify_checkpoint

QUIET = ["logging.histogram_every=1000", "logging.heatmap_samples=0", "train.grad_accum=1"]


def _flip_byte(path: Path, offset: int = -9) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_corrupt_checkpoint_refused_and_auto_falls_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_tiny_datasets(tmp_path / "datasets")
    model = tiny_model_dir(tmp_path)
    cfg = train_config(tmp_path, "baseline", model, data,
                       overrides=[*QUIET, "train.max_steps=4", "train.checkpoint_every=1"])
    run_training(cfg, run_name="r", stop_at="stage2:3")
    ckpts = list_checkpoints(tmp_path / "runs" / "r" / "checkpoints", ["stage2"])
    assert [c.step for c in ckpts] == [2, 3]
    bad = ckpts[-1].weights_file("model")
    _flip_byte(bad)  # same size; only the SHA256 can tell

    with pytest.raises(RunSetupError, match=rf"{bad}: SHA256 .* differs"):
        run_training(cfg, run_name="r", resume=str(ckpts[-1].path))
    capsys.readouterr()
    resumed = run_training(cfg, run_name="r", resume="auto")
    err = capsys.readouterr().err
    assert f"skipping corrupt checkpoint: {bad}" in err and f"falling back to {ckpts[0].path}" in err
    assert resumed.completed
    history = json.loads(Path(resumed.history_path).read_text())["stage2"]
    assert [row["step"] for row in history] == [1.0, 2.0, 3.0, 4.0]  # 3 and 4 re-run from the step-2 checkpoint
    for ckpt in list_checkpoints(tmp_path / "runs" / "r" / "checkpoints", ["stage2"]):
        verify_checkpoint(ckpt)  # the corrupt step 3 was replaced by an intact one

    # every checkpoint corrupt: auto fails closed instead of starting over
    for ckpt in list_checkpoints(tmp_path / "runs" / "r" / "checkpoints", ["stage2"]):
        _flip_byte(ckpt.state_file)
    with pytest.raises(RunSetupError, match="no intact checkpoint"):
        run_training(cfg, run_name="r", resume="auto")


def test_changed_config_refused_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_tiny_datasets(tmp_path / "datasets")
    model = tiny_model_dir(tmp_path)
    base = [*QUIET, "train.max_steps=3", "train.checkpoint_every=1000"]
    cfg = train_config(tmp_path, "baseline", model, data, overrides=base)
    run_training(cfg, run_name="c", stop_at="stage2:1")
    out = tmp_path / "runs" / "c"
    original = (out / "config.resolved.yaml").read_text()

    changed = train_config(tmp_path, "baseline", model, data,
                           overrides=[*base, "optim.lr=0.001", "train.batch_size=3"])
    with pytest.raises(RunSetupError) as err:
        run_training(changed, run_name="c", resume="auto")
    assert "optim.lr: 1e-05 -> 0.001" in str(err.value) and "train.global_batch_size: 2 -> 3" in str(err.value)
    assert "--allow-config-change" in str(err.value)

    # bookkeeping keys (where logs go, progress bar, checkpoint cadence) are not training-relevant
    watched = train_config(tmp_path, "baseline", model, data,
                           overrides=[*base, "train.checkpoint_every=2", "train.progress_bar=false",
                                      "logging.histogram_every=999"])
    resumed = run_training(watched, run_name="c", resume="auto", stop_at="stage2:2")
    assert not resumed.completed

    capsys.readouterr()
    allowed = run_training(changed, run_name="c", resume="auto", allow_config_change=True)
    assert allowed.completed and "resuming with a changed config" in capsys.readouterr().err
    assert (out / "config.resolved.yaml").read_text() == original  # never overwritten
    written = sorted(p.name for p in out.glob("config.resolved.*.yaml"))
    assert written == ["config.resolved.1.yaml", "config.resolved.2.yaml"]
    assert yaml.safe_load((out / "config.resolved.2.yaml").read_text())["optim"]["lr"] == 0.001


def test_stage2_resumes_from_stage1_run_of_same_config(tmp_path: Path) -> None:
    """The Stage 1 -> Stage 2 handoff: Stage 1 alone (stages=[stage1]) in one run dir, Stage 2 in another resuming
    from its checkpoint; `stages` is stage-specific, so the config check passes."""
    data = write_tiny_datasets(tmp_path / "datasets")
    model = tiny_model_dir(tmp_path)
    base = [*QUIET, "train.max_steps=1", "stage1.max_steps=1", "verifiable.mode=random_matched"]
    stage1 = run_training(train_config(tmp_path, "verifiable", model, data, overrides=[*base, "stages=[stage1]"]),
                          run_name="s1")
    ckpt = list_checkpoints(stage1.checkpoint_dir, ["stage1"])[-1]
    stage2 = run_training(train_config(tmp_path, "verifiable", model, data, overrides=base), run_name="s2",
                          resume=str(ckpt.path))
    assert stage2.completed


def test_diverged_update_is_never_checkpointed(tmp_path: Path) -> None:
    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, "baseline", tiny_model_dir(tmp_path), data,
                       overrides=[*QUIET, "train.max_steps=3", "train.checkpoint_every=1", "optim.lr=1e30"])
    with pytest.raises(NonFiniteError, match=r"stage2 step 1: parameter norm .* exceeds 100 x the initial") as err:
        run_training(cfg, run_name="lr")
    assert "no checkpoint was written before it" in str(err.value)
    assert list_checkpoints(tmp_path / "runs" / "lr" / "checkpoints", ["stage2"]) == []


def test_max_len_below_prompt_budget_fails_before_training(tmp_path: Path) -> None:
    from wmtp_core.data.errors import DatasetError

    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, "baseline", tiny_model_dir(tmp_path), data,
                       overrides=[*QUIET, "train.max_steps=1", "data.max_len=12"])
    with pytest.raises(DatasetError, match=r"data.max_len: 12 is below the prompt budget .* prompt of \S+ has "
                                           r"\d+ tokens .* set data.max_len >= \d+"):
        run_training(cfg, run_name="short")
    assert not (tmp_path / "runs" / "short" / "checkpoints").exists()
