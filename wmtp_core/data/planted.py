"""A planted-signal world: tiny verifiable programs whose correctness is decided by ONE known token.

Each problem states a formula in its prompt, e.g. ``# f(a, b) = a * 3``. The correct solution computes it on one
line ``r = a * 3`` placed among random filler assignments (``xw = b``; letters only), before and after it, so the
decisive token sits at a varying distance from EOS. A mutant changes exactly one token of that line, the operator
or the constant, and is kept only when running it gives a different f(a, b) on probe inputs. Two rules:

* ``identity`` (default): correct rows use ``+`` or ``*`` and a constant 1..4; mutants use ``-`` or a constant
  6..9. The decisive token's identity decides correctness, wherever it sits: this tests the machinery (Stage 1
  value learning -> V -> TD errors -> localisation), not the model's reasoning.
* ``prompt``: any operator and constant 1..9 in correct rows; a mutant swaps the operator or moves the constant by
  one. The decisive token alone says nothing; only its agreement with the prompt's one operator / digit does.

Rows follow the processed schema (prompt, response ending in "</s>", metadata{task_id, source, is_correct,
has_tests}) plus ``divergence_char``: the character offset in the response of the mutated token (the report
recomputes the divergence by token comparison anyway). ``CharTokenizer`` maps every character to one token, so
"one token" is exact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from wmtp_core.data.schema import EOS_TEXT

OPS = ("+", "-", "*")
GOOD_OPS, BAD_OP = ("+", "*"), "-"  # rule "identity": correct rows use + or * and a constant 1..4
Rule = Literal["identity", "prompt"]
ALPHABET = "\n #(),*+-:=_abcdefghijklmnopqrstuvwxyz0123456789"
SOURCE = "planted"


class CharTokenizer:
    """One token per character of ALPHABET; ids 0 = pad, 1 = BOS, 2 = EOS (TokenizerLike)."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self) -> None:
        self.ids = {c: i + 3 for i, c in enumerate(ALPHABET)}
        self.n_words = len(ALPHABET) + 3

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        try:
            ids = [self.ids[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"CharTokenizer: character {exc.args[0]!r} is not in the planted alphabet") from exc
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int]) -> str:
        return "".join(ALPHABET[i - 3] for i in ids if i >= 3)

    def piece(self, i: int) -> str:
        return {0: "<pad>", 1: "<s>", 2: "</s>"}.get(i, ALPHABET[i - 3] if 3 <= i < self.n_words else "?")


@dataclass(frozen=True)
class Formula:
    op: str
    const: int

    def text(self) -> str:
        return f"a {self.op} {self.const}"


def run_program(code: str, a: int, b: int) -> int:
    """Execute a planted solution (our own generated arithmetic, no builtins) and call f(a, b)."""
    scope: dict = {}
    exec(code, {"__builtins__": {}}, scope)
    return int(scope["f"](a, b))


PROBES = ((3, 5), (7, 2), (-4, 6))


def _filler(rng: random.Random, n: int) -> list[str]:
    """Assignments with letters only (no operator, no digit: the formula's tokens are the only ones of their kind)."""
    return [f"{rng.choice('tuvwxyz')}{rng.choice('tuvwxyz')} = {rng.choice('ab')}" for _ in range(n)]


def _program(before: list[str], formula: str, after: list[str]) -> tuple[str, int]:
    """Solution code and the character offset of the formula in it."""
    head = "def f(a, b):\n" + "".join(f"    {line}\n" for line in before) + "    r = "
    tail = "\n" + "".join(f"    {line}\n" for line in after) + "    return r\n"
    return head + formula + tail, len(head)


def _formula(rng: random.Random, rule: Rule) -> Formula:
    if rule == "prompt":
        return Formula(rng.choice(OPS), rng.randrange(1, 10))
    return Formula(rng.choice(GOOD_OPS), rng.randrange(1, 5))


def _mutants(f: Formula, rule: Rule) -> list[tuple[Formula, int]]:
    """One-token mutants of f (operator or constant) with the offset of the changed token inside f.text()."""
    if rule == "identity":
        return [(Formula(BAD_OP, f.const), 2), (Formula(f.op, f.const + 5), 4)]
    out = [(Formula(op, f.const), 2) for op in OPS if op != f.op]
    return out + [(Formula(f.op, c), 4) for c in (f.const - 1, f.const + 1) if 1 <= c <= 9]


def _row(task: str, prompt: str, code: str, correct: bool, divergence: int | None) -> dict:
    return {"prompt": prompt, "response": code + EOS_TEXT,
            "metadata": {"task_id": task, "source": SOURCE, "is_correct": correct, "has_tests": True},
            "divergence_char": divergence}


def planted_rows(n_problems: int, seed: int, max_filler: int = 3, rule: Rule = "identity") -> list[dict]:
    """Per problem: one correct row and one verified one-token mutant (2 * n_problems rows, shuffled).

    A mutant is kept only when running it gives a different f(a, b) than the correct program on a probe input
    (and the correct program is checked against the formula)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_problems):
        f = _formula(rng, rule)
        before, after = _filler(rng, rng.randint(0, max_filler)), _filler(rng, rng.randint(0, max_filler))
        good, at = _program(before, f.text(), after)
        expected = [eval(f.text(), {"__builtins__": {}}, {"a": a}) for a, _ in PROBES]  # noqa: S307 (own text)
        if [run_program(good, a, b) for a, b in PROBES] != expected:
            raise AssertionError(f"planted generator: {good!r} does not compute {f.text()}")
        options = [(m, off) for m, off in _mutants(f, rule)
                   if [run_program(_program(before, m.text(), after)[0], a, b) for a, b in PROBES] != expected]
        mutant, offset = rng.choice(options)
        prompt = f"# f(a, b) = {f.text()}\n"
        task = f"{SOURCE}/{seed}/{i}"
        rows.append(_row(task, prompt, good, True, None))
        rows.append(_row(task, prompt, _program(before, mutant.text(), after)[0], False, at + offset))
    rng.shuffle(rows)
    return rows
