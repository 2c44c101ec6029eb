"""The sandbox classifies outcomes and contains hostile programs; nothing survives or leaks."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from tests.fixtures.eval import assert_cleaned_up, process_alive
from wmtp_core.eval.sandbox import SandboxLimits, detect_isolation, run_many, run_program

FAST = SandboxLimits(wall_s=5.0, cpu_s=4, memory_mb=512, fsize_mb=1, nproc=16)
NO_HOOKS = FAST.model_copy(update={"audit_hooks": False})


def _os_layers() -> list[SandboxLimits]:
    """Hooks on, plus hooks off where the OS layer alone is meant to hold (unprivileged user)."""
    return [FAST, NO_HOOKS] if detect_isolation().uid is not None else [FAST]


def test_outcomes_are_classified() -> None:
    assert run_program("print('hi')", limits=FAST).stdout == "hi\n"
    assert run_program("import sys; print(sum(map(int, sys.stdin.read().split())))", "2 3\n",
                       limits=FAST).stdout == "5\n"
    assert run_program("assert 1 == 2", limits=FAST).status == "failed"
    error = run_program("1 / 0", limits=FAST)
    assert error.status == "error" and "ZeroDivisionError" in error.stderr
    assert run_program("def broken(:\n", limits=FAST).status == "error"
    assert run_program("raise SystemExit(0)", limits=FAST).status == "failed"  # left before its end
    assert run_program("raise SystemExit(0)", limits=FAST, require_end=False).status == "passed"  # stdio judging


def test_run_many_keeps_order() -> None:
    jobs = [(f"print({i} * {i})", "") for i in range(6)]
    assert [r.stdout for r in run_many(jobs, FAST, workers=3)] == [f"{i * i}\n" for i in range(6)]


def test_infinite_loop_is_stopped_by_the_wall_clock() -> None:
    result = run_program("while True:\n    pass\n", limits=FAST.model_copy(update={"wall_s": 1.0, "cpu_s": 30}))
    assert result.status == "timeout" and result.wall_timeout
    assert_cleaned_up(result)


def test_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    result = run_program("while True:\n    pass\n", limits=FAST.model_copy(update={"wall_s": 30.0, "cpu_s": 1}))
    assert result.status == "timeout" and not result.wall_timeout
    assert_cleaned_up(result)


def test_fork_bomb_is_capped_and_killed() -> None:
    source = textwrap.dedent("""
        import os, time
        print(os.getcwd(), flush=True)
        refused = 0
        for _ in range(100):
            try:
                os.fork()
            except OSError:
                refused += 1
                time.sleep(0.01)
        time.sleep(60)
    """)
    result = run_program(source, limits=FAST.model_copy(update={"wall_s": 2.0, "nproc": 12}))
    assert result.status == "timeout"
    assert_cleaned_up(result)


def test_memory_hog_gets_memory_error() -> None:
    source = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n"
    result = run_program(source, limits=FAST)
    assert result.status == "error" and "MemoryError" in result.stderr
    assert_cleaned_up(result)


def test_huge_output_is_capped() -> None:
    source = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    limits = FAST.model_copy(update={"max_output_bytes": 4096})
    result = run_program(source, limits=limits)
    assert result.status == "error"  # the file-size limit stops the writes
    assert result.stdout_truncated and len(result.stdout) == 4096
    assert_cleaned_up(result)


@pytest.mark.parametrize("limits", _os_layers(), ids=lambda lim: f"hooks={lim.audit_hooks}")
def test_cannot_write_outside_its_directory(tmp_path: Path, limits: SandboxLimits) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    target = tmp_path / "created.txt"
    source = textwrap.dedent(f"""
        import os
        results = []
        for action in (lambda: open({str(target)!r}, 'w').write('pwned'),
                       lambda: os.remove({str(victim)!r}),
                       lambda: open({str(victim)!r}, 'a').write('pwned')):
            try:
                action()
                results.append('done')
            except OSError:
                results.append('refused')
        open('inside.txt', 'w').write('fine')
        print(results, open('inside.txt').read())
    """)
    result = run_program(source, limits=limits)
    assert result.stdout.strip() == "['refused', 'refused', 'refused'] fine"
    assert not target.exists() and victim.read_text() == "keep"
    assert_cleaned_up(result)


def test_cannot_write_to_world_writable_tmp() -> None:
    target = Path("/tmp") / f"wmtp-escape-{uuid.uuid4().hex}"
    result = run_program(f"open({str(target)!r}, 'w').write('x')", limits=FAST)
    assert result.status == "error" and not target.exists()
    through_dir_fd = textwrap.dedent(f"""
        import os
        fd = os.open('/tmp', os.O_RDONLY)
        os.close(os.open({target.name!r}, os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    """)
    result = run_program(through_dir_fd, limits=FAST)
    assert result.status == "error" and "directory descriptors" in result.stderr and not target.exists()


def test_environment_secrets_are_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = uuid.uuid4().hex
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    source = textwrap.dedent(f"""
        import os
        print(dict(os.environ))
        try:
            print(open('/proc/{os.getpid()}/environ', 'rb').read())
        except OSError as exc:
            print('refused', type(exc).__name__)
    """)
    result = run_program(source, limits=FAST)
    assert result.status == "passed"
    assert secret not in result.stdout and "HF_TOKEN" not in result.stdout
    if detect_isolation().uid is not None:
        assert "refused" in result.stdout


def _listening_socket() -> tuple[socket.socket, list[bool]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3.0)
    accepted: list[bool] = []

    def accept() -> None:
        try:
            conn, _ = server.accept()
            accepted.append(True)
            conn.close()
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    return server, accepted


@pytest.mark.parametrize("limits", [FAST] + ([NO_HOOKS] if detect_isolation().network == "namespace" else []),
                         ids=lambda lim: f"hooks={lim.audit_hooks}")
def test_no_network(limits: SandboxLimits) -> None:
    server, accepted = _listening_socket()
    port = server.getsockname()[1]
    source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n"
    try:
        result = run_program(source, limits=limits)
    finally:
        server.close()
    assert result.status == "error" and not accepted
    assert_cleaned_up(result)


@pytest.mark.parametrize("limits", _os_layers(), ids=lambda lim: f"hooks={lim.audit_hooks}")
def test_cannot_kill_its_parent_or_our_processes(limits: SandboxLimits) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    source = textwrap.dedent(f"""
        import os, signal
        for pid in (os.getppid(), {sleeper.pid}, {os.getpid()}):
            try:
                os.kill(pid, signal.SIGTERM)
                print('sent', pid)
            except (OSError, PermissionError) as exc:
                print('refused', pid, type(exc).__name__)
    """)
    try:
        result = run_program(source, limits=limits)
        assert process_alive(sleeper.pid) and process_alive(os.getpid())
        assert f"sent {sleeper.pid}" not in result.stdout and f"sent {os.getpid()}" not in result.stdout
    finally:
        sleeper.kill()
        sleeper.wait()
    assert_cleaned_up(result)


def test_isolation_mode_is_reported() -> None:
    isolation = detect_isolation()
    assert isolation.network in ("namespace", "audit-hook")
    if os.geteuid() == 0:  # root must never run untrusted code as itself: drop to nobody, or a user namespace
        assert isolation.uid not in (None, 0) or "--user" in isolation.namespaces, isolation
