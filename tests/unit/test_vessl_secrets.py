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
    scrub,
)
from wmtp_core.vessl_client.settings import load_settings


def test_env_file_parsing_and_registration(tmp_path) -> None:
    env = tmp_path / ".env.vessl"
    env.write_text("# comment\nexport VESSL_ACCESS_TOKEN='tok-unit-777'\nVESSL_ORGANIZATION=org # trailing\n"
                   "VESSL_PROJECT=\"p\"\nMLFLOW_TRACKING_PASSWORD=pw-unit-888\n")
    env.chmod(0o600)
    values = load_env_file(env)
    assert values == {"VESSL_ACCESS_TOKEN": "tok-unit-777", "VESSL_ORGANIZATION": "org", "VESSL_PROJECT": "p",
                      "MLFLOW_TRACKING_PASSWORD": "pw-unit-888"}
    assert redact("a tok-unit-777 b pw-unit-888 org") == "a *** b *** org"  # non-secret values untouched


def test_env_file_errors_name_file_and_line(tmp_path) -> None:
    env = tmp_path / "bad.env"
    env.write_text("A=1\nthis is not an assignment\n")
    env.chmod(0o600)
    with pytest.raises(EnvFileError, match=r"bad.env:2: expected KEY=VALUE"):
        load_env_file(env)
    with pytest.raises(FileNotFoundError, match="copy .env.vessl.example"):
        load_env_file(tmp_path / "missing", required=True)


def test_settings_require_keys_and_mask_token(tmp_path, monkeypatch) -> None:
    for key in ("VESSL_ACCESS_TOKEN", "VESSL_ORGANIZATION", "VESSL_PROJECT", "VESSL_API_HOST"):
        monkeypatch.delenv(key, raising=False)
    env = tmp_path / ".env.vessl"
    env.write_text("VESSL_ACCESS_TOKEN=tok-unit-999\n")
    env.chmod(0o600)
    with pytest.raises(ValueError, match="missing VESSL_ORGANIZATION, VESSL_PROJECT"):
        load_settings(env)
    env.write_text("VESSL_ACCESS_TOKEN=tok-unit-999\nVESSL_ORGANIZATION=o\nVESSL_PROJECT=p\n")
    settings = load_settings(env)
    assert "tok-unit-999" not in repr(settings) and settings.access_token.get_secret_value() == "tok-unit-999"


def test_secret_key_detection() -> None:
    assert all(map(is_secret_key, ["VESSL_ACCESS_TOKEN", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY",
                                   "API_KEY"]))
    assert not any(map(is_secret_key, ["VESSL_ORGANIZATION", "MLFLOW_TRACKING_URI", "WMTP_PARENT_RUN_ID",
                                       "TOKENIZERS_PARALLELISM", "KEYBOARD_LAYOUT", "MONKEY_MODE"]))


def test_a_config_word_under_a_secret_looking_name_never_masks_output(monkeypatch) -> None:
    """TOKENIZERS_PARALLELISM=false (set by tests/conftest.py and by many HF users) once made every later "false"
    print as *** (a JSON report read back as `"dry_run": ***`)."""
    from wmtp_core.secrets import REDACTOR, scrub

    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("SERVICE_TOKEN", "true")
    scrub("x")  # registers our environment's secrets
    assert REDACTOR.redact('{"dry_run": false, "ok": true}') == '{"dry_run": false, "ok": true}'


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


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_env_file_readable_by_others_is_refused(tmp_path, mode: int) -> None:
    env = tmp_path / ".env.vessl"
    env.write_text("VESSL_ACCESS_TOKEN=tok-unit-perm-555\n")
    env.chmod(mode)
    with pytest.raises(EnvFileError, match=rf"\.env\.vessl: mode {mode:04o} .*chmod 600") as refused:
        load_env_file(env)
    assert "tok-unit-perm-555" not in str(refused.value)
    env.chmod(0o600)
    assert load_env_file(env) == {"VESSL_ACCESS_TOKEN": "tok-unit-perm-555"}
    env.chmod(0o400)
    assert load_env_file(env) == {"VESSL_ACCESS_TOKEN": "tok-unit-perm-555"}


def test_url_userinfo_is_redacted_everywhere() -> None:
    assert redact("cannot reach https://alice:pa55w0rd@mlflow.example.com:5000/api/2.0") == \
        "cannot reach https://***@mlflow.example.com:5000/api/2.0"
    assert redact("postgresql+psycopg2://u:p@db:5432/x and http://tok@h/") == "postgresql+psycopg2://***@db:5432/x " \
        "and http://***@h/"
    untouched = "mail a@b.c, git@github.com:o/r.git, http://host/path?q=a@b, sqlite:///storage/mlflow/mlflow.db"
    assert redact(untouched) == untouched
    assert "pa55w0rd" not in str(redacted_exception(ConnectionError("https://alice:pa55w0rd@h/ refused")))


def test_scrub_masks_token_looking_strings_and_our_environment(monkeypatch) -> None:
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "env-token-value-9876")
    leaky = ("VESSL_ACCESS_TOKEN=tok-from-a-file-1234\n{\"password\": \"hunter2hunter2\"}\n"
             "Authorization: Bearer abc.def.ghi-123456\nhf_abcdefghijklmnopqrstuv ghp_0123456789abcdefghijkl "
             "AKIAABCDEFGHIJKLMNOP sk-0123456789abcdefghijklmn\nsaw env-token-value-9876 at https://u:p@h/\n")
    scrubbed = scrub(leaky)
    for secret in ("tok-from-a-file-1234", "hunter2hunter2", "abc.def.ghi-123456", "hf_abcdefghijklmnopqrstuv",
                   "ghp_0123456789abcdefghijkl", "AKIAABCDEFGHIJKLMNOP", "sk-0123456789abcdefghijklmn",
                   "env-token-value-9876", "u:p@"):
        assert secret not in scrubbed, secret
    assert "VESSL_ACCESS_TOKEN=***" in scrubbed and "https://***@h/" in scrubbed
    ordinary = "test 0: expected '4 5', got 'max_new_tokens=256 tokens 7'\nAssertionError: sk-learn"
    assert scrub(ordinary) == ordinary
