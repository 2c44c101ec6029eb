"""The one task decorator every WMTP step uses: content cache policy, retries with backoff, persisted results.

Cache key = SHA256 of (task source, every input with each `Path` replaced by the SHA256 of the file or directory
it names). An unchanged input therefore never recomputes, and a changed file always does.

Convention for task signatures: a `Path` argument is an INPUT (hashed by content); an output location is passed
as a `str` (hashed by value only), because hashing a directory the task is about to fill would change the key. Results are pickled to
the flow's result storage (`flows/wmtp.py` sets `result_storage_path()`: `PREFECT_LOCAL_STORAGE_PATH` when set, else
`storage/prefect/`); both outlive the process, so a second `flows/local.py` run in a new process reuses them (Prefect
reports those task runs as `Cached`). Tasks inherit the storage from the flow, so a test can redirect everything with
`flow.with_options(result_storage=tmp_path)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.states import Completed, State
from prefect.tasks import exponential_backoff

from tasks._fingerprint import digest
from wmtp_core import paths

Kind = Literal["compute", "io", "remote"]
R = TypeVar("R")

# Retries per kind of step: pure computation is deterministic (a retry would fail the same way); file and network
# steps get a few tries with exponential backoff (base seconds below, doubling, with jitter) — but only for
# failures that can be transient: I/O steps retry OSErrors other than "not there / not allowed"; remote steps retry
# anything except the errors named in `give_up_on` (e.g. a local job that exited non-zero) and ValueErrors.
RETRIES: dict[Kind, int] = {"compute": 0, "io": 2, "remote": 3}
BACKOFF_BASE_S: dict[Kind, float] = {"compute": 0.0, "io": 2.0, "remote": 10.0}
PERMANENT_OS_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def is_retryable(kind: Kind, exc: BaseException, give_up_on: tuple[type[BaseException], ...] = ()) -> bool:
    if isinstance(exc, give_up_on):
        return False
    if kind == "io":
        return isinstance(exc, OSError) and not isinstance(exc, PERMANENT_OS_ERRORS)
    if kind == "remote":
        return not isinstance(exc, ValueError)
    return False


def _retry_condition(kind: Kind, give_up_on: tuple[type[BaseException], ...]) -> Callable[..., bool]:
    def should_retry(task: Any, task_run: Any, state: State) -> bool:
        exc = state.data if isinstance(state.data, BaseException) else None
        return exc is None or is_retryable(kind, exc, give_up_on)

    return should_retry


@dataclass
class ContentInputs(CachePolicy):
    """Key = SHA256 of the task source plus the inputs, with every Path replaced by its content SHA256.

    `exclude` names arguments that do not change what a task produces (a per-run job name, the MLflow parent
    run id in the environment) and so stay out of the key.
    """

    exclude: tuple[str, ...] = ()

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        source = TASK_SOURCE.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        kept = {k: v for k, v in (inputs or {}).items() if k not in self.exclude}
        return digest({"task": task_ctx.task.name if task_ctx else None, "source": source, "inputs": kept})


CONTENT_INPUTS = ContentInputs()


def result_storage_path() -> Path:
    configured = os.environ.get("PREFECT_LOCAL_STORAGE_PATH") or os.environ.get("PREFECT_RESULTS_LOCAL_STORAGE_PATH")
    return Path(configured).expanduser() if configured else paths.STORAGE / "prefect"


def wmtp_task(name: str, kind: Kind = "compute", cache: bool = True, cache_exclude: tuple[str, ...] = (),
              give_up_on: tuple[type[BaseException], ...] = (), timeout_seconds: float | None = None) -> Callable[[Callable[..., R]], Task[..., R]]:
    """Decorate a step: `@wmtp_task("convert-checkpoint", kind="io")`; kind picks the retry policy."""
    policy = ContentInputs(exclude=tuple(cache_exclude)) if cache else NO_CACHE

    def wrap(fn: Callable[..., R]) -> Task[..., R]:
        return task(
            fn,
            name=name,
            cache_policy=policy,
            persist_result=True,
            retries=RETRIES[kind],
            retry_delay_seconds=exponential_backoff(BACKOFF_BASE_S[kind]) if RETRIES[kind] else 0,
            retry_jitter_factor=0.2 if RETRIES[kind] else None,
            retry_condition_fn=_retry_condition(kind, tuple(give_up_on)) if RETRIES[kind] else None,
            timeout_seconds=timeout_seconds,
            log_prints=True,
        )

    return wrap


@task(name="skipped-step", cache_policy=NO_CACHE, persist_result=False)
def _skipped(step: str, reason: str) -> State:
    print(f"{step}: skipped ({reason})")
    return Completed(name="Skipped", message=f"{step}: {reason}")


def skip(step: str, reason: str) -> State:
    """Record a visible task run `<step>-skipped` (state name `Skipped`) for a step this experiment does not need."""
    return _skipped.with_options(name=f"{step}-skipped")(step, reason, return_state=True)
