"""Resumable sampler order, checkpoint round trip / pruning / atomicity, device selection."""

from pathlib import Path

import pytest
import torch

from wmtp_core.train.device import rng_state, select_device, set_rng_state
from wmtp_core.train.sampler import ResumableSampler
from wmtp_core.train.state import (
    checkpoint_reference,
    list_checkpoints,
    load_state,
    load_weights,
    parse_checkpoint,
    save_checkpoint,
)


def test_sampler_visits_every_row_once_per_epoch_and_reshuffles() -> None:
    s = ResumableSampler(10, batch_size=5, seed=1)
    first = s.next_indices() + s.next_indices()
    second = s.next_indices() + s.next_indices()
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second
    assert ResumableSampler(10, 5, seed=1, shuffle=False).next_indices() == [0, 1, 2, 3, 4]


def test_sampler_resume_continues_exactly_across_epochs() -> None:
    full = ResumableSampler(7, batch_size=3, seed=5)
    expected = [full.next_indices() for _ in range(6)]
    part = ResumableSampler(7, batch_size=3, seed=5)
    got = [part.next_indices() for _ in range(2)]
    resumed = ResumableSampler(7, batch_size=3, seed=5)
    resumed.load_state_dict(part.state_dict())
    got += [resumed.next_indices() for _ in range(4)]
    assert got == expected


def test_sampler_state_from_another_dataset_rejected() -> None:
    with pytest.raises(ValueError, match="7 rows"):
        ResumableSampler(8, 2, seed=5).load_state_dict(ResumableSampler(7, 2, seed=5).state_dict())


def test_sampler_ranks_take_disjoint_batches() -> None:
    a, b = ResumableSampler(8, 2, 0, rank=0, world_size=2), ResumableSampler(8, 2, 0, rank=1, world_size=2)
    rows = a.next_indices() + b.next_indices() + a.next_indices() + b.next_indices()
    assert sorted(rows) == list(range(8))


def test_checkpoint_round_trip_prune_and_reference(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    for step in (1, 2, 3):
        ckpt = save_checkpoint(tmp_path, "stage2", step, {"model": model}, {"step": step, "rng": rng_state()},
                               keep=2)
    assert [c.step for c in list_checkpoints(tmp_path, ["stage1", "stage2"])] == [2, 3]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    other = torch.nn.Linear(3, 2)
    load_weights(ckpt, "model", other)
    torch.testing.assert_close(other.weight, model.weight)
    assert load_state(ckpt)["step"] == 3
    ref = checkpoint_reference(ckpt)
    assert set(ref["files"]) == {"model.safetensors", "state.pt"} and len(ref["files"]["state.pt"]["sha256"]) == 64


def test_checkpoint_order_follows_stage_order(tmp_path: Path) -> None:
    m = torch.nn.Linear(1, 1)
    save_checkpoint(tmp_path, "stage2", 1, {"m": m}, {})
    save_checkpoint(tmp_path, "stage1", 9, {"m": m}, {})
    assert [(c.stage, c.step) for c in list_checkpoints(tmp_path, ["stage1", "stage2"])] == [("stage1", 9),
                                                                                              ("stage2", 1)]


def test_parse_checkpoint_rejects_other_dirs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        parse_checkpoint(tmp_path)


def test_weights_mismatch_named(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path, "stage1", 1, {"m": torch.nn.Linear(2, 2)}, {})
    with pytest.raises(ValueError, match="m.safetensors: weights do not match"):
        load_weights(ckpt, "m", torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_rng_state_round_trip() -> None:
    state = rng_state()
    a = torch.rand(3)
    set_rng_state(state)
    torch.testing.assert_close(torch.rand(3), a)


def test_device_selection() -> None:
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            select_device("cuda")
