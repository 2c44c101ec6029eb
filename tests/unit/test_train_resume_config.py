"""The resume config check without training: which keys count, how differences are named, and the resolved
config files of a run directory (never overwritten)."""

from pathlib import Path

import pytest

from wmtp_core import paths
from wmtp_core.config import load_config
from wmtp_core.train.errors import RunSetupError
from wmtp_core.train.resume import check_config, training_config, write_resolved_config
from wmtp_core.train.state import Checkpoint

CONFIGS = paths.REPO_ROOT / "configs"


def _training(*overrides: str) -> dict:
    return training_config(load_config(CONFIGS / "defaults.yaml", CONFIGS / "recipe.verifiable.yaml", None,
                                       list(overrides)))


def test_stage_list_paths_and_bookkeeping_are_not_training_relevant() -> None:
    base = _training()
    assert _training("stages=[stage1]", "paths.datasets_root=/elsewhere", "run.device=cpu",
                     "logging.mlflow=false", "train.checkpoint_every=7") == base
    assert "optim.lr" in base and not any(k.startswith(("stages", "paths.", "logging.")) for k in base)



def test_batch_is_recorded_as_the_global_batch_so_a_checkpoint_resumes_at_another_world_size(tmp_path: Path) -> None:
    def at(batch: int, world: int) -> dict:
        return training_config(load_config(CONFIGS / "defaults.yaml", CONFIGS / "recipe.verifiable.yaml", None,
                                           [f"train.batch_size={batch}"]), world_size=world)

    two_ranks = at(2, 2)
    assert "train.batch_size" not in two_ranks and two_ranks["train.global_batch_size"] == 4
    ckpt = Checkpoint(tmp_path / "stage2-step-0000001", "stage2", 1)
    assert check_config(ckpt, {"config": two_ranks}, at(4, 1), allow_change=False)  # 2 ranks x 2 == 1 x 4
    with pytest.raises(RunSetupError, match=r"train.global_batch_size: 4 -> 2"):
        check_config(ckpt, {"config": two_ranks}, at(2, 1), allow_change=False)

def test_differences_named_and_excluded_keys_of_an_older_record_ignored(tmp_path: Path) -> None:
    ckpt = Checkpoint(tmp_path / "stage2-step-0000001", "stage2", 1)
    current = _training()
    older = {**current, "train.max_param_norm_ratio": 100.0}  # recorded before that key was excluded
    assert check_config(ckpt, {"config": older}, current, allow_change=False)
    changed = {**current, "optim.lr": 0.5}
    changed.pop("train.grad_accum")
    with pytest.raises(RunSetupError, match=r"optim.lr: 0.5 -> 1e-05; train.grad_accum: \(absent\) -> 4"):
        check_config(ckpt, {"config": changed}, current, allow_change=False)
    assert check_config(ckpt, {"config": changed}, current, allow_change=True) is False
    with pytest.raises(RunSetupError, match="field config: not recorded"):
        check_config(ckpt, {}, current, allow_change=False)


def test_resolved_config_never_overwritten(tmp_path: Path) -> None:
    first = write_resolved_config(tmp_path, "a: 1\n")
    assert write_resolved_config(tmp_path, "a: 1\n") == first  # same text: the same file
    second = write_resolved_config(tmp_path, "a: 2\n")
    third = write_resolved_config(tmp_path, "a: 3\n")
    assert (first.name, second.name, third.name) == ("config.resolved.yaml", "config.resolved.1.yaml",
                                                      "config.resolved.2.yaml")
    assert first.read_text() == "a: 1\n" and write_resolved_config(tmp_path, "a: 2\n") == second
