"""The shared task decorator: content cache keys, Cached on an unchanged rerun, rerun on a changed file, retries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures.orch import bump, in_isolated_process, prefect_server, run_isolated, task_runs

from tasks._fingerprint import digest, fingerprint
from tasks._task import CONTENT_INPUTS, RETRIES, is_retryable, skip, wmtp_task
from wmtp_core import paths


@dataclass(frozen=True)
class Box:
    path: Path
    label: str


def test_fingerprint_follows_file_contents(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("one")
    first = digest({"x": f})
    assert digest({"x": f}) == first
    f.write_text("two")
    assert digest({"x": f}) != first


def test_fingerprint_of_directory_tracks_nested_files_and_names(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "w.bin").write_bytes(b"\0\1")
    base = digest(tmp_path / "d")
    (tmp_path / "d" / "sub" / "w.bin").write_bytes(b"\0\2")
    changed = digest(tmp_path / "d")
    (tmp_path / "d" / "sub" / "w.bin").rename(tmp_path / "d" / "sub" / "v.bin")
    renamed = digest(tmp_path / "d")
    assert len({base, changed, renamed}) == 3


def test_fingerprint_of_directory_ignores_hidden_caches(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.jsonl").write_text("{}")
    before = digest(tmp_path / "d")
    (tmp_path / "d" / ".cache" / "json").mkdir(parents=True)
    (tmp_path / "d" / ".cache" / "json" / "x.arrow").write_text("cache")
    (tmp_path / "d" / ".verify_cache.json").write_text("{}")
    assert digest(tmp_path / "d") == before


def test_fingerprint_marks_missing_paths_and_walks_dataclasses(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert fingerprint(missing) == {"path": str(missing), "missing": "1"}
    (tmp_path / "f").write_text("x")
    fp = fingerprint(Box(tmp_path / "f", "l"))
    assert fp["__type__"] == "Box" and "sha256" in fp["path"] and fp["label"] == "l"


def test_fingerprint_refuses_opaque_objects() -> None:
    with pytest.raises(TypeError, match="cannot fingerprint a object"):
        fingerprint(object())


def _ctx(name: str, source: str) -> SimpleNamespace:
    return SimpleNamespace(task=SimpleNamespace(name=name, source_code=source))


def test_cache_key_depends_on_task_source_and_parameters(tmp_path: Path) -> None:
    (tmp_path / "in").write_text("data")
    inputs = {"src": tmp_path / "in", "k": 3}
    key = CONTENT_INPUTS.compute_key(_ctx("t", "def f(): return 1"), inputs, {})
    assert key == CONTENT_INPUTS.compute_key(_ctx("t", "def f(): return 1"), dict(inputs), {})
    assert key != CONTENT_INPUTS.compute_key(_ctx("t", "def f(): return 2"), inputs, {})
    assert key != CONTENT_INPUTS.compute_key(_ctx("t", "def f(): return 1"), {**inputs, "k": 4}, {})


def test_retries_by_kind() -> None:
    assert RETRIES["compute"] == 0 and RETRIES["io"] >= 1 and RETRIES["remote"] >= RETRIES["io"]


class JobExited(RuntimeError):
    pass


def test_only_transient_failures_are_retried() -> None:
    assert is_retryable("io", ConnectionResetError()) and is_retryable("io", TimeoutError())
    assert not is_retryable("io", FileNotFoundError()) and not is_retryable("io", ValueError())
    assert is_retryable("remote", RuntimeError("run preempted"))
    assert not is_retryable("remote", JobExited("exit 1"), give_up_on=(JobExited,))
    assert not is_retryable("remote", ValueError("bad config"))
    assert not is_retryable("compute", OSError())


def _measure_task(counter: Path):
    @wmtp_task("measure", kind="io")
    def measure(src: Path, factor: int) -> int:
        bump(counter)
        return len(src.read_text()) * factor

    return measure


def test_rerun_is_cached_and_a_changed_input_file_recomputes(tmp_path: Path) -> None:
    from prefect import flow

    prefect_server()
    counter, src = tmp_path / "calls", tmp_path / "input.txt"
    measure = _measure_task(counter)

    @flow(result_storage=tmp_path / "results")
    def run() -> tuple[int, str]:
        state = measure(src, 2, return_state=True)
        return state.result(), state.name

    src.write_text("abc")
    assert run() == (6, "Completed")
    assert run() == (6, "Cached")
    assert counter.read_text() == "1"
    src.write_text("abcd")
    assert run() == (8, "Completed")
    assert counter.read_text() == "2"
    assert any((tmp_path / "results").iterdir()), "results were not persisted to the flow's result storage"


def test_io_task_that_fails_once_succeeds_on_retry(tmp_path: Path) -> None:
    from prefect import flow

    prefect_server()
    counter = tmp_path / "attempts"

    @wmtp_task("flaky-io", kind="io")
    def flaky() -> str:
        if bump(counter) == 1:
            raise OSError("transient: storage not mounted yet")
        return "ok"

    @flow(result_storage=tmp_path / "results")
    def run() -> tuple[str, str]:
        state = flaky.with_options(retry_delay_seconds=0)(return_state=True)
        return state.result(), state.name

    assert run() == ("ok", "Completed")
    assert counter.read_text() == "2"


def test_io_task_with_a_permanent_error_is_not_retried(tmp_path: Path) -> None:
    from prefect import flow

    prefect_server()
    counter = tmp_path / "attempts"

    @wmtp_task("missing-input", kind="io")
    def missing() -> None:
        bump(counter)
        raise FileNotFoundError("no such checkpoint")

    @flow(result_storage=tmp_path / "results")
    def run() -> str:
        return missing.with_options(retry_delay_seconds=0)(return_state=True).name

    assert run() == "Failed"
    assert counter.read_text() == "1"


def test_compute_task_failure_is_not_retried(tmp_path: Path) -> None:
    from prefect import flow

    prefect_server()
    counter = tmp_path / "attempts"

    @wmtp_task("broken")
    def broken() -> None:
        bump(counter)
        raise ValueError("bad config")

    @flow(result_storage=tmp_path / "results")
    def run() -> str:
        return broken(return_state=True).name

    assert run() == "Failed"
    assert counter.read_text() == "1"


def test_skip_records_a_visible_skipped_run(tmp_path: Path) -> None:
    if not in_isolated_process():  # reads task-run states back: see run_isolated
        run_isolated(f"{Path(__file__).relative_to(paths.REPO_ROOT)}::test_skip_records_a_visible_skipped_run")
        return
    from prefect import flow
    from prefect.runtime import flow_run

    prefect_server()

    @flow(result_storage=tmp_path / "results")
    def run() -> tuple[str, str]:
        state = skip("stage1", "baseline trains no value head")
        return state.name, str(flow_run.id)

    name, run_id = run()
    assert name == "Skipped"
    [task_run] = task_runs(run_id)
    assert task_run.name.startswith("stage1-skipped") and task_run.state_name == "Skipped"
