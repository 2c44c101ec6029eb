"""`.env.vessl` parsing and redaction in text, logs, exceptions and JSON."""

from __future__ import annotations

import logging

import pytest

from wmtp_core.secrets import (
    EnvFileError,
    RedactingFilter,
    Redactor,
    is_secret_key,
    load_env_file,
    redact,
    redact_data,
    redacted_exception,
)
from wmtp_core.vessl_client.settings import load_settings


def test_env_file_parsing_and_registration(tmp_path) -> None:
    env = tmp_path / ".env.vessl"
    env.write_text("# comment\nexport VESSL_ACCESS_TOKEN='tok-unit-777'\nVESSL_ORGANIZATION=org # trailing\n"
                   "VESSL_PROJECT=\"p\"\nMLFLOW_TRACKING_PASSWORD=pw-unit-888\n")
    values = load_env_file(env)
    assert values == {"VESSL_ACCESS_TOKEN": "tok-unit-777", "VESSL_ORGANIZATION": "org", "VESSL_PROJECT": "p",
                      "MLFLOW_TRACKING_PASSWORD": "pw-unit-888"}
    assert redact("a tok-unit-777 b pw-unit-888 org") == "a *** b *** org"  # non-secret values untouched


def test_env_file_errors_name_file_and_line(tmp_path) -> None:
    env = tmp_path / "bad.env"
    env.write_text("A=1\nthis is not an assignment\n")
    with pytest.raises(EnvFileError, match=r"bad.env:2: expected KEY=VALUE"):
        load_env_file(env)
    with pytest.raises(FileNotFoundError, match="copy .env.vessl.example"):
        load_env_file(tmp_path / "missing", required=True)


def test_settings_require_keys_and_mask_token(tmp_path, monkeypatch) -> None:
    for key in ("VESSL_ACCESS_TOKEN", "VESSL_ORGANIZATION", "VESSL_PROJECT", "VESSL_API_HOST"):
        monkeypatch.delenv(key, raising=False)
    env = tmp_path / ".env.vessl"
    env.write_text("VESSL_ACCESS_TOKEN=tok-unit-999\n")
    with pytest.raises(ValueError, match="missing VESSL_ORGANIZATION, VESSL_PROJECT"):
        load_settings(env)
    env.write_text("VESSL_ACCESS_TOKEN=tok-unit-999\nVESSL_ORGANIZATION=o\nVESSL_PROJECT=p\n")
    settings = load_settings(env)
    assert "tok-unit-999" not in repr(settings) and settings.access_token.get_secret_value() == "tok-unit-999"


def test_secret_key_detection() -> None:
    assert all(map(is_secret_key, ["VESSL_ACCESS_TOKEN", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY",
                                   "API_KEY"]))
    assert not any(map(is_secret_key, ["VESSL_ORGANIZATION", "MLFLOW_TRACKING_URI", "WMTP_PARENT_RUN_ID"]))


def test_longest_value_wins_and_short_values_ignored() -> None:
    r = Redactor()
    r.register(["abcd1234", "abcd1234-long", "ab"])
    assert r.redact("x abcd1234-long y abcd1234 ab") == "x *** y *** ab"


def test_logging_filter_and_exception_and_json() -> None:
    r_value = "log-secret-4321"
    from wmtp_core.secrets import REDACTOR

    REDACTOR.register([r_value])
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "value=%s", (r_value,), None)
    try:
        raise RuntimeError(f"boom {r_value}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "value=***" and r_value not in (record.exc_text or "")
    assert "boom ***" in record.exc_text
    assert r_value not in str(redacted_exception(ValueError(r_value)))
    assert redact_data({"a": [r_value, 1], r_value: {"b": r_value}}) == {"a": ["***", 1], "***": {"b": "***"}}
