"""Secrets: load `.env.vessl` and keep every secret value out of logs, exceptions and artifacts.

`load_env_file` parses a dotenv-style file (KEY=VALUE, `#` comments, optional quotes) and refuses one that its
group or others can read (make it with `install -m 600 .env.vessl.example .env.vessl`). Every value whose
key looks secret (token, password, secret, key) is registered with the process-wide `REDACTOR`, which
`redact()` text, a `logging.Filter` and an exception wrapper all use. `redact()` also masks URL userinfo
(`scheme://user:password@host` -> `scheme://***@host`). `scrub()` adds token-looking patterns (vendor token
prefixes, `Bearer ...`, `SOME_TOKEN=...` assignments) for text that untrusted code produced (verdict details).
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
# A secret-bearing name has TOKEN / PASSWORD / SECRET / CREDENTIAL(S) / (API)KEY as one of its `_`-separated words
# (VESSL_ACCESS_TOKEN, AWS_SECRET_ACCESS_KEY, HF_TOKEN); a word that merely starts with one is not a secret
# (TOKENIZERS_PARALLELISM=false registered "false" as a secret and masked every "false" printed afterwards).
SECRET_KEY_PATTERN = re.compile(r"(?:^|_)(?:TOKENS?|PASSWORD|PASSWD|SECRET|CREDENTIALS?|KEY|APIKEY)(?:_|$)",
                                re.IGNORECASE)
# values that are config words, never credentials, even under a secret-looking name
_NOT_SECRET_VALUES = frozenset({"true", "false", "none", "null", "yes", "no", "auto", "default"})
MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would redact ordinary words


URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@]+@")
TOKEN_PATTERNS = (
    re.compile(r"\b(?:hf|gh[pousr]|github_pat|glpat|xox[abprs])_[A-Za-z0-9_-]{16,}"),  # vendor token prefixes
    re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),  # JWT
)
SECRET_ASSIGNMENT = re.compile(  # FOO_TOKEN=..., "password": "...", Authorization: Bearer ...
    r"(?P<key>\b[A-Za-z0-9_]*(?:TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIALS?|API_?KEY|ACCESS_KEY|AUTHORIZATION)"
    r"[\"']?\s*[=:]\s*[\"']?)(?:Bearer\s+|Basic\s+)?[^\s\"',;]{4,}",
    re.IGNORECASE,
)
BEARER = re.compile(r"\b(?P<key>Bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


class EnvFileError(ValueError):
    """A malformed line in an env file (the message names file and line, never the value)."""


class InsecureEnvFileError(EnvFileError):
    """A secrets file that other users can read (the message names the file, its mode and the fix)."""


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


def check_private(path: Path) -> None:
    """Refuse a secrets file that its group or others may read or write (as ssh does for private keys)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise InsecureEnvFileError(
            f"{path}: mode {mode:04o} lets other users read these secrets; run `chmod 600 {path}` "
            f"(create it with `install -m 600 .env.vessl.example .env.vessl`)")


def load_env_file(path: str | Path = DEFAULT_ENV_FILE, *, required: bool = False) -> dict[str, str]:
    """Read KEY=VALUE pairs; register secret-looking values with `REDACTOR`. Missing file -> {} unless required."""
    path = Path(path)
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path}: env file not found (copy .env.vessl.example and fill it in)")
        return {}
    check_private(path)
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
            before = len(self._values)
            for value in values:
                if value and len(value) >= _MIN_SECRET_LEN and value.lower() not in _NOT_SECRET_VALUES:
                    self._values.add(value)
            if len(self._values) == before and self._pattern is not None:
                return
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


def redact_url_userinfo(text: str) -> str:
    """`scheme://user:password@host` -> `scheme://***@host` (the user name goes too: it is half a credential)."""
    return URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text) if "@" in text else text


def redact(text: str) -> str:
    """Every registered secret value and every URL's userinfo masked."""
    return redact_url_userinfo(REDACTOR.redact(text))


def scrub(text: str) -> str:
    """`redact` plus token-looking patterns and the secrets of our own environment: for text that untrusted code
    produced (a sandboxed program's stderr/stdout in a verdict detail), where values we never saw may appear."""
    REDACTOR.register_environ()
    text = redact(text)
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub(MASK, text)
    text = SECRET_ASSIGNMENT.sub(lambda m: f"{m.group('key')}{MASK}", text)
    return BEARER.sub(lambda m: f"{m.group('key')}{MASK}", text)


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
