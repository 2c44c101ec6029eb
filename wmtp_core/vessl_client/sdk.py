"""Lazy access to the `vessl` SDK, pointed at the configured API host.

Importing `vessl` runs network calls when a token is found (VesslApi.__init__ calls /accounts/me), so this
module imports it only inside `get_sdk`, after setting `VESSL_API_HOST` (read by vessl.util.constant at import)
and disabling config-file writes. The token is never put into os.environ (child processes would inherit it):
it is handed to `vessl_api.set_access_token` and lives only in the SDK's Authorization header.
Routes used (vessl 0.1.199, see tests/fixtures/vessl_api_shapes.json):
  GET  /api/v1/accounts/me                         (set_access_token)
  GET  /api/v1/organizations/{org}                 (set_organization)
  GET  /api/v1/organizations/{org}/projects        (set_project)
  GET  /api/v1/organizations/{org}/clusters        (cluster_list_api)
  POST .../projects/{project}/run/spec/create_from_yaml
  GET  .../projects/{project}/run_executions/{id}  and .../{id}/logs
  POST .../projects/{project}/run_executions/{id}/terminate
  POST /api/v1/organizations/{org}/storages/{storage}/volumes/{volume}/federate  (then the S3 API it returns)
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

from wmtp_core.vessl_client.settings import VesslSettings

_LOCK = threading.Lock()
_CONFIGURED: tuple[str, str, str, str] | None = None


def _import_vessl(api_host: str) -> ModuleType:
    """Import the SDK with VESSL_API_HOST set for its import-time client, then restore the environment."""
    os.environ["VESSL_SAVE_CONFIG"] = "false"  # never write the token to ~/.vessl/config
    os.environ.setdefault("VESSL_DATA_COLLECTION_OPT_OUT", "true")
    os.environ.setdefault("ENABLE_SENTRY", "false")
    if "vessl" in sys.modules:
        return sys.modules["vessl"]
    previous = os.environ.get("VESSL_API_HOST")
    os.environ["VESSL_API_HOST"] = api_host
    try:
        import vessl  # lazy: see module docstring
    finally:
        if previous is None:
            os.environ.pop("VESSL_API_HOST", None)
        else:
            os.environ["VESSL_API_HOST"] = previous
    return vessl


def get_sdk(settings: VesslSettings) -> ModuleType:
    """Import `vessl` (once) and point its client at `settings` (host, token, organization, project)."""
    global _CONFIGURED
    with _LOCK:
        vessl = _import_vessl(settings.api_host)
        token = settings.access_token.get_secret_value()
        key = (settings.api_host, token, settings.organization, settings.project)
        if _CONFIGURED != key:
            api = vessl.vessl_api
            api.api_client.configuration.host = settings.api_host.rstrip("/")
            api.set_access_token(access_token=token, no_prompt=True)
            api.set_organization(settings.organization)
            api.set_project(settings.project)
            _CONFIGURED = key
        return vessl
