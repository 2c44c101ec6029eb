"""Checkpoint writes (issue 14 items 5, 7, 9): fsync of every file and directory before the rename, ENOSPC as a
clean error naming the path and errno, and one writer per run directory across processes."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from wmtp_core import io
from wmtp_core.train import state
from wmtp_core.train.lock import RunDirLocked, RunLock


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths (resolved from the descriptor at call time) of every os.fsync; the real fsync still runs."""
    calls: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(io.os, "fsync", spy)
    return calls


def test_checkpoint_files_and_dirs_fsynced_before_rename(tmp_path: Path, fsynced: list[str]) -> None:
    root = tmp_path / "checkpoints"
    ckpt = state.save_checkpoint(root, "stage2", 1, {"model": nn.Linear(3, 2)}, {"step": 1})
    names = {"model.safetensors", "state.pt", "checkpoint.json"}
    tmp_dirs = {Path(p).parent for p in fsynced if Path(p).name in names}
    assert len(tmp_dirs) == 1  # written under one temporary name...
    tmp = tmp_dirs.pop()
    assert tmp != ckpt.path and tmp.parent == root  # ...beside the final one
    synced_files = [Path(p).name for p in fsynced if Path(p).parent == tmp]
    assert set(synced_files) == names
    i_dir, i_root = fsynced.index(str(tmp)), fsynced.index(str(root))
    assert all(fsynced.index(str(tmp / n)) < i_dir for n in names)  # files, then their directory...
    assert i_dir < i_root  # ...then the parent, after the rename
    assert ckpt.path.is_dir() and not tmp.exists()


def test_atomic_json_fsyncs_file_and_directory(tmp_path: Path, fsynced: list[str]) -> None:
    io.atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert len(fsynced) == 2 and Path(fsynced[0]).parent == tmp_path and fsynced[1] == str(tmp_path)


@pytest.mark.slow  # torch.distributed.checkpoint's first import and save
def test_distributed_checkpoint_fsynced_and_verified(tmp_path: Path, fsynced: list[str]) -> None:
    from wmtp_core.distributed_checkpoint import save_distributed_checkpoint

    target = save_distributed_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, state={"step": 1})
    shards = [p.name for p in (target / "dcp").iterdir()]
    assert shards and all(any(s.endswith(f"/dcp/{name}") for s in fsynced) for name in shards)
    assert any(s.endswith("/dcp") for s in fsynced) and fsynced[-1] == str(tmp_path)

    ckpt = state.Checkpoint(target, "stage2", 1)
    state.verify_checkpoint(ckpt)  # every shard listed in checkpoint.json with its SHA256
    shard = sorted((target / "dcp").glob("*.distcp"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(state.CheckpointError, match=rf"{shard}: SHA256 .* differs"):
        state.verify_checkpoint(ckpt)


def test_disk_full_names_path_and_errno(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(tensors: dict, filename: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(state, "save_file", full)
    root = tmp_path / "checkpoints"
    with pytest.raises(state.CheckpointWriteError, match=r"stage2-step-0000003: checkpoint not written: .*"
                       r"model.safetensors: \[ENOSPC\] No space left on device"):
        state.save_checkpoint(root, "stage2", 3, {"model": nn.Linear(3, 2)}, {"step": 3})
    assert list(root.iterdir()) == []  # nothing half-written left behind


def test_train_cli_reports_checkpoint_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    from tests.fixtures.train import CONFIGS
    from wmtp_core.cli import main
    from wmtp_core.train import run

    def failing(*args, **kwargs):
        raise state.CheckpointWriteError("/x/stage2-step-0000001: checkpoint not written: [ENOSPC] No space")

    monkeypatch.setattr(run, "run_training", failing)
    code = main(["train", "--recipe", str(CONFIGS / "recipe.baseline.yaml"), "--no-mlflow"])
    err = capsys.readouterr().err
    assert code == 1 and "error: /x/stage2-step-0000001: checkpoint not written: [ENOSPC]" in err
    assert "Traceback" not in err


_HOLDER = """
import sys
from pathlib import Path
from wmtp_core.train.lock import RunLock
with RunLock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_second_process_refused_while_run_dir_locked(tmp_path: Path) -> None:
    from tests.fixtures.models import tiny_model_dir
    from tests.fixtures.train import train_config, write_tiny_datasets
    from wmtp_core.train.run import RunSetupError, run_training

    run_dir = tmp_path / "runs" / "same"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = train_config(tmp_path, "baseline", tiny_model_dir(tmp_path), write_tiny_datasets(tmp_path / "d"))
        with pytest.raises(RunSetupError, match=rf"{run_dir}: in use by another run \(pid {holder.pid} host "):
            run_training(cfg, run_name="same")
        with pytest.raises(RunDirLocked):
            RunLock(run_dir).acquire()
    finally:
        holder.communicate("", timeout=30)
    with RunLock(run_dir):  # released when the holder exits
        pass
    assert not (run_dir / "checkpoints").exists()


def test_lock_is_released_after_run_and_on_failure(tmp_path: Path) -> None:
    with RunLock(tmp_path / "r"):
        with pytest.raises(RunDirLocked):
            RunLock(tmp_path / "r").acquire()  # a second open file description conflicts too
    RunLock(tmp_path / "r").acquire().release()
