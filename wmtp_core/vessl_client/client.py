"""Thin VESSL run client over the SDK's generated API: every call has a request timeout and retries."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wmtp_core.vessl_client.retry import call_with_retry
from wmtp_core.vessl_client.sdk import get_sdk
from wmtp_core.vessl_client.settings import VesslSettings
from wmtp_core.vessl_client.spec import RunSpecError, spec_to_yaml

SUCCESS_STATUSES = frozenset({"completed"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "stopped", "terminated", "error", "cancelled"})


@dataclass(frozen=True)
class LogLine:
    timestamp: float
    message: str


class VesslRunClient:
    """Create / read / logs / terminate for VESSL runs in the configured organization and project."""

    def __init__(self, settings: VesslSettings, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self._sleep = sleep

    def _api(self) -> Any:
        return get_sdk(self.settings).vessl_api

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        s = self.settings
        return call_with_retry(lambda: fn(self._api()), what=what, attempts=s.max_attempts,
                               base_delay=s.backoff_base_s, max_delay=s.backoff_max_s, sleep=self._sleep)

    def _where(self) -> dict[str, Any]:
        return {
            "organization_name": self.settings.organization,
            "project_name": self.settings.project,
            "_request_timeout": self.settings.request_timeout_s,
        }

    def check_cluster(self, cluster: str) -> None:
        """Raise RunSpecError if `cluster` is not one of the organization's clusters."""
        resp = self._call("list clusters", lambda api: api.cluster_list_api(
            organization_name=self.settings.organization, _request_timeout=self.settings.request_timeout_s))
        names = sorted(c.name for c in (resp.clusters or []))
        if cluster not in names:
            raise RunSpecError(f"resources.cluster: {cluster!r} not found in organization "
                               f"{self.settings.organization!r}; available: {names}")

    def create(self, spec: Mapping[str, object]) -> int:
        """Create the run from `spec`; return its id."""
        cluster = spec["resources"]["cluster"]  # type: ignore[index]
        self.check_cluster(str(cluster))
        body = {"yaml_spec": spec_to_yaml(spec)}
        resp = self._call("create run", lambda api: api.run_spec_create_from_yamlapi(
            run_spec_create_from_yamlapi_input=body, **self._where()))
        return int(resp.run_execution.id)

    def status(self, run_id: int) -> str:
        resp = self._call(f"read run {run_id}", lambda api: api.run_execution_read_api(
            execution_id=run_id, **self._where()))
        return str(resp.status)

    def logs_after(self, run_id: int, after: float) -> list[LogLine]:
        """Log entries with timestamp > `after`, oldest first."""
        resp = self._call(f"logs of run {run_id}", lambda api: api.run_execution_logs_api(
            execution_id=run_id, log_start=after, **self._where()))
        entries = [LogLine(float(e.timestamp), str(e.message or "")) for e in (resp.logs or [])]
        return sorted((e for e in entries if e.timestamp > after), key=lambda e: e.timestamp)

    def terminate(self, run_id: int) -> str:
        resp = self._call(f"terminate run {run_id}", lambda api: api.run_execution_terminate_api(
            execution_id=run_id, **self._where()))
        return str(getattr(resp, "status", "") or "")
