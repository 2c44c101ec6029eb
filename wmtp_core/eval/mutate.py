"""Single-point mutations of Python source, located with `ast` and applied to the original text.

Editing the text (not `ast.unparse`) keeps the author's formatting and comments, so a mutant differs from the
accepted solution only where it is wrong. Kinds:
  arith      + -> -, - -> +, * -> +, // -> *, % -> //
  compare    < <-> <=, > <-> >=, == <-> !=
  boolop     and <-> or
  constant   integer literal n -> n + 1 / n - 1 (off by one)
  drop_line  delete one simple statement that sits alone on its lines, in a block of two or more
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

ARITH = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "+"), ast.FloorDiv: ("//", "*"),
         ast.Mod: ("%", "//")}
COMPARE = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
           ast.Eq: ("==", "!="), ast.NotEq: ("!=", "==")}
BOOLOP = {ast.And: ("and", "or"), ast.Or: ("or", "and")}
_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return, ast.Break, ast.Continue)


@dataclass(frozen=True)
class Mutation:
    kind: str
    line: int
    start: int  # byte offsets into the UTF-8 source
    end: int
    old: str
    new: str

    def describe(self) -> str:
        return f"{self.kind}@{self.line}: {self.old.strip()!r} -> {self.new.strip()!r}"

    def apply(self, source: str) -> str:
        data = source.encode("utf-8")
        return (data[: self.start] + self.new.encode("utf-8") + data[self.end:]).decode("utf-8")


class _Offsets:
    def __init__(self, source: str) -> None:
        self.data = source.encode("utf-8")
        self.line_starts = [0]
        for i, byte in enumerate(self.data):
            if byte == 0x0A:
                self.line_starts.append(i + 1)

    def at(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col

    def text(self, start: int, end: int) -> str:
        return self.data[start:end].decode("utf-8", errors="replace")


def _operator_between(off: _Offsets, left: ast.AST, right: ast.AST, symbol: str) -> tuple[int, int] | None:
    """Byte span of `symbol` between two nodes, when only whitespace/parentheses surround it."""
    start, end = off.at(left.end_lineno, left.end_col_offset), off.at(right.lineno, right.col_offset)
    gap = off.text(start, end)
    if gap.strip(" \t()\\\n") != symbol:
        return None
    offset = len(gap[: gap.index(symbol)].encode("utf-8"))
    return start + offset, start + offset + len(symbol.encode("utf-8"))


def _operator_mutations(tree: ast.AST, off: _Offsets) -> list[Mutation]:
    found = []
    for node in ast.walk(tree):
        pairs: list[tuple[ast.AST, ast.AST, tuple[str, str], str]] = []
        if isinstance(node, ast.BinOp) and type(node.op) in ARITH:
            pairs.append((node.left, node.right, ARITH[type(node.op)], "arith"))
        elif isinstance(node, ast.Compare):
            lefts = [node.left, *node.comparators[:-1]]
            pairs += [(a, b, COMPARE[type(op)], "compare") for a, b, op in zip(lefts, node.comparators, node.ops)
                      if type(op) in COMPARE]
        elif isinstance(node, ast.BoolOp):
            pairs += [(a, b, BOOLOP[type(node.op)], "boolop") for a, b in zip(node.values, node.values[1:])]
        for left, right, (old, new), kind in pairs:
            span = _operator_between(off, left, right, old)
            if span:
                found.append(Mutation(kind, left.end_lineno, span[0], span[1], old, new))
    return found


def _constant_mutations(tree: ast.AST, off: _Offsets) -> list[Mutation]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            start = off.at(node.lineno, node.col_offset)
            end = off.at(node.end_lineno, node.end_col_offset)
            if off.text(start, end) != str(node.value):
                continue  # hex, underscores, ...
            for new in (node.value + 1, node.value - 1):
                if new >= 0:
                    found.append(Mutation("constant", node.lineno, start, end, str(node.value), str(new)))
    return found


def _drop_mutations(tree: ast.AST, off: _Offsets) -> list[Mutation]:
    found = []
    for node in ast.walk(tree):
        for body in (getattr(node, name, None) for name in ("body", "orelse", "finalbody")):
            if not isinstance(body, list) or len(body) < 2:
                continue
            for stmt in body:
                if not isinstance(stmt, _SIMPLE):
                    continue
                start, end = off.at(stmt.lineno, 0), off.at(stmt.end_lineno, stmt.end_col_offset)
                line_end = off.line_starts[stmt.end_lineno] if stmt.end_lineno < len(off.line_starts) else len(off.data)
                lines = off.text(start, line_end)
                if lines.strip() != off.text(off.at(stmt.lineno, stmt.col_offset), end).strip():
                    continue  # shares its line with something else
                found.append(Mutation("drop_line", stmt.lineno, start, line_end, lines, ""))
    return found


def candidate_mutations(source: str) -> list[Mutation]:
    """Every single-point mutation of `source` (empty when it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    off = _Offsets(source)
    return _operator_mutations(tree, off) + _constant_mutations(tree, off) + _drop_mutations(tree, off)


def mutants(source: str) -> list[tuple[Mutation, str]]:
    """(mutation, mutated source) pairs that still parse and differ from the original."""
    out = []
    for mutation in candidate_mutations(source):
        mutated = mutation.apply(source)
        try:
            ast.parse(mutated)
        except SyntaxError:
            continue
        if mutated != source:
            out.append((mutation, mutated))
    return out
