"""Connection settings for the VESSL API, read from `.env.vessl` (or the environment) — never logged in clear."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from wmtp_core.secrets import DEFAULT_ENV_FILE, REDACTOR, load_env_file

DEFAULT_API_HOST = "https://api.vessl.ai"


class VesslSettings(BaseModel):
    """What the SDK needs to talk to VESSL. `access_token` is a SecretStr: its repr is masked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_host: str = DEFAULT_API_HOST
    access_token: SecretStr
    organization: str = Field(min_length=1)
    project: str = Field(min_length=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)


_ENV_KEYS = {
    "VESSL_API_HOST": "api_host",
    "VESSL_ACCESS_TOKEN": "access_token",
    "VESSL_ORGANIZATION": "organization",
    "VESSL_PROJECT": "project",
}


def settings_from_mapping(values: Mapping[str, str], source: str) -> VesslSettings:
    """Build settings from KEY=VALUE pairs; a missing key raises naming the key and the source."""
    missing = [k for k in ("VESSL_ACCESS_TOKEN", "VESSL_ORGANIZATION", "VESSL_PROJECT") if not values.get(k)]
    if missing:
        raise ValueError(f"{source}: missing {', '.join(missing)} (see .env.vessl.example)")
    kwargs = {field: values[key] for key, field in _ENV_KEYS.items() if values.get(key)}
    REDACTOR.register([values["VESSL_ACCESS_TOKEN"]])
    return VesslSettings(**kwargs)


def load_settings(env_file: str | Path | None = None) -> VesslSettings:
    """Settings from `env_file` (default `.env.vessl`), with process environment variables taking precedence."""
    path = Path(env_file) if env_file is not None else DEFAULT_ENV_FILE
    merged = {**load_env_file(path), **{k: v for k, v in os.environ.items() if k in _ENV_KEYS and v}}
    return settings_from_mapping(merged, f"{path} (or the environment)")
