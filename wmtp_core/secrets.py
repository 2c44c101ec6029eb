"""Secrets: load `.env.vessl` and keep every secret value out of logs, exceptions and artifacts.

`load_env_file` parses a dotenv-style file (KEY=VALUE, `#` comments, optional quotes). Every value whose
key looks secret (token, password, secret, key) is registered with the process-wide `REDACTOR`, which
`redact()` text, a `logging.Filter` and an exception wrapper all use.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from wmtp_core.paths import REPO_ROOT

DEFAULT_ENV_FILE = REPO_ROOT / ".env.vessl"
SECRET_KEY_PATTERN = re.compile(r"(TOKEN|PASSWORD|SECRET|CREDENTIAL|_KEY$|^KEY$|ACCESS_KEY)", re.IGNORECASE)
MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would redact ordinary words


class EnvFileError(ValueError):
    """A malformed line in an env file (the message names file and line, never the value)."""


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY_PATTERN.search(key))


def _parse_line(path: Path, lineno: int, raw: str) -> tuple[str, str] | None:
    line = raw.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith("export "):
        line = line[len("export ") :].lstrip()
    key, sep, value = line.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise EnvFileError(f"{path}:{lineno}: expected KEY=VALUE with a valid variable name")
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    elif " #" in value:
        value = value.split(" #", 1)[0].rstrip()
    return key, value


def load_env_file(path: str | Path = DEFAULT_ENV_FILE, *, required: bool = False) -> dict[str, str]:
    """Read KEY=VALUE pairs; register secret-looking values with `REDACTOR`. Missing file -> {} unless required."""
    path = Path(path)
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path}: env file not found (copy .env.vessl.example and fill it in)")
        return {}
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parsed = _parse_line(path, lineno, raw)
        if parsed is not None:
            values[parsed[0]] = parsed[1]
    REDACTOR.register_mapping(values)
    return values


class Redactor:
    """Replaces every registered secret value by `***` (longest first, so overlapping values are covered)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def register(self, values: Iterable[str | None]) -> None:
        with self._lock:
            for value in values:
                if value and len(value) >= _MIN_SECRET_LEN:
                    self._values.add(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def register_mapping(self, env: Mapping[str, str]) -> None:
        self.register(v for k, v in env.items() if is_secret_key(k))

    def register_environ(self) -> None:
        self.register_mapping(os.environ)

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None and text else text

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR.redact(text)


def redact_data(value: object) -> object:
    """Redact every string inside a JSON-like structure (dicts, lists, scalars)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Logging filter: formats the record's message, redacts it and drops the args (so handlers see clean text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class RedactedError(RuntimeError):
    """An exception whose text was redacted; raised in place of one that might carry a secret."""


def redacted_exception(exc: BaseException) -> RedactedError:
    """A RedactedError carrying the redacted text of `exc` (type name kept)."""
    return RedactedError(redact(f"{type(exc).__name__}: {exc}"))
