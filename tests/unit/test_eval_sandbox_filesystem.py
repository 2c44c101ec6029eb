"""The sandboxed program sees a filesystem with nothing of the user's, and the sandbox refuses to run without one."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wmtp_core import paths
from wmtp_core.eval import sandbox
from wmtp_core.eval.sandbox import SandboxLimits, detect_isolation, run_program
from wmtp_core.eval.sandbox_isolation import (
    ALLOW_UNISOLATED_ENV,
    ISOLATION_ENV,
    Isolation,
    SandboxUnavailable,
    candidates,
)
from wmtp_core.eval.sandbox_jail import EXIT_JAIL

FAST = SandboxLimits(wall_s=5.0, cpu_s=4, memory_mb=512, fsize_mb=1, nproc=16)
PRIVATE_MODES = candidates(include_unisolated=False)


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    """A world-readable secret in the repository, in $HOME and in /tmp (as `cp .env.vessl.example` leaves it)."""
    secret = f"tok-PLANTED-{uuid.uuid4().hex}"
    name = f".wmtp-planted-{uuid.uuid4().hex}.env"
    files = [paths.REPO_ROOT / name, Path.home() / name, Path("/tmp") / name]
    for path in files:
        path.write_text(f"VESSL_ACCESS_TOKEN={secret}\n")
        path.chmod(0o644)
    try:
        yield secret, files
    finally:
        for path in files:
            path.unlink(missing_ok=True)


def _snoop_program(files: list[Path]) -> str:
    return textwrap.dedent(f"""
        import os
        for path in {[str(f) for f in files]!r} + ['/etc/passwd', '/proc/self/environ']:
            try:
                print(path, open(path).read())
            except OSError as exc:
                print(path, 'unreadable', type(exc).__name__)
        for directory in {sorted({str(f.parent) for f in files})!r} + ['/', '/root', '/home', '/tmp']:
            try:
                print(directory, os.listdir(directory))
            except OSError as exc:
                print(directory, 'unlistable', type(exc).__name__)
    """)


@pytest.mark.parametrize("isolation", PRIVATE_MODES, ids=lambda i: i.name)
def test_planted_secrets_are_invisible(planted: tuple[str, list[Path]], isolation: Isolation) -> None:
    secret, files = planted
    result = run_program(_snoop_program(files), limits=FAST, isolation=isolation)
    assert result.status == "passed", result.stderr
    assert secret not in result.stdout and secret not in result.stderr
    listings = [line for line in result.stdout.splitlines() if "[" in line]
    for path in files:
        assert f"{path} unreadable" in result.stdout
        assert not any(path.name in line for line in listings), listings
    assert "/etc/passwd unreadable" in result.stdout  # /etc is not part of the view either


def test_the_default_mode_has_a_private_filesystem_view() -> None:
    assert detect_isolation().filesystem == "private-root"


def _redetect(monkeypatch: pytest.MonkeyPatch, **env: str) -> Isolation:
    for key in (ISOLATION_ENV, ALLOW_UNISOLATED_ENV):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    detect_isolation.cache_clear()
    try:
        return detect_isolation()
    finally:
        detect_isolation.cache_clear()


def test_refuses_without_a_private_filesystem_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: when no mode with a private view works, nothing runs unless unisolated runs are allowed."""
    unisolated = [c for c in candidates(include_unisolated=True) if c.filesystem == "host"]
    monkeypatch.setattr(sandbox, "candidates", lambda include_unisolated: unisolated if include_unisolated else [])
    with pytest.raises(SandboxUnavailable, match=ALLOW_UNISOLATED_ENV):
        _redetect(monkeypatch)
    with pytest.raises(SandboxUnavailable, match="not available here"):
        _redetect(monkeypatch, **{ISOLATION_ENV: "plain"})
    chosen = _redetect(monkeypatch, **{ALLOW_UNISOLATED_ENV: "1"})
    assert chosen.filesystem == "host" and chosen.name in {c.name for c in unisolated}


def test_a_broken_jail_never_runs_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the view cannot be built, the program does not run at all (it is never started unconfined)."""
    isolation, real = detect_isolation(), sandbox.jail_command
    monkeypatch.setattr(sandbox, "jail_command", lambda *args: [*real(*args)[:-1], "--bogus", "/usr", "--"])
    result = run_program("print('the program ran')", limits=FAST, isolation=isolation)
    assert result.status == "error" and result.returncode == EXIT_JAIL
    assert "the program ran" not in result.stdout and "cannot build the filesystem view" in result.stderr


def test_cli_refuses_early_and_allow_unisolated_opts_in(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from wmtp_core.cli import main

    unisolated = [c for c in candidates(include_unisolated=True) if c.name == "plain"]
    monkeypatch.setattr(sandbox, "candidates", lambda include_unisolated: unisolated if include_unisolated else [])
    monkeypatch.delenv(ALLOW_UNISOLATED_ENV, raising=False)
    monkeypatch.delenv(ISOLATION_ENV, raising=False)
    detect_isolation.cache_clear()
    try:
        command = ["eval", "--dataset", "humaneval", "--check-references", "--limit", "1", "--workers", "1"]
        assert main(command) == 2
        assert ALLOW_UNISOLATED_ENV in capsys.readouterr().err
        assert main([*command, "--allow-unisolated"]) == 0
        assert "1/1 reference solutions pass" in capsys.readouterr().out and detect_isolation().name == "plain"
    finally:
        detect_isolation.cache_clear()


def test_verdict_details_are_scrubbed_before_they_are_stored() -> None:
    """Whatever a program prints (a known secret, a token it found, URL credentials) never reaches the detail."""
    from wmtp_core.eval.checkers import check
    from wmtp_core.eval.problems import Problem
    from wmtp_core.secrets import REDACTOR

    known = f"known-secret-{uuid.uuid4().hex[:12]}"
    REDACTOR.register([known])
    code = textwrap.dedent(f"""
        import sys
        sys.stderr.write('VESSL_ACCESS_TOKEN=tok-seen-somewhere-1234 hf_abcdefghijklmnopqrstuv '
                         'https://bob:pw-in-url-5678@mlflow.example.com {known}\\\\n')
    """)
    problem = Problem("mbpp-0_A", "mbpp", code, {"test_list": ["assert False"], "test_setup_code": ""}, {})
    verdict = check(problem, code, FAST)
    assert verdict.status == "failed" and "AssertionError" in verdict.detail
    for secret in ("tok-seen-somewhere-1234", "hf_abcdefghijklmnopqrstuv", "pw-in-url-5678", known):
        assert secret not in verdict.detail and secret not in str(verdict.to_dict())
    assert "VESSL_ACCESS_TOKEN=***" in verdict.detail
