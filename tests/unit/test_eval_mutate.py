"""Single-point mutations: located by ast, applied to the text, formatting and comments preserved."""

from __future__ import annotations

import ast

from wmtp_core.eval.mutate import candidate_mutations, mutants

SOURCE = '''n = int(input())  # count
values = list(map(int, input().split()))
total = 0
for v in values:
    if v > 0 and v % 2 == 0:
        total += v * 2
print(total - 1, "né")
'''


def _descriptions(source: str) -> set[str]:
    return {m.describe() for m, _ in mutants(source)}


def test_every_kind_is_generated() -> None:
    found = _descriptions(SOURCE)
    assert "compare@5: '>' -> '>='" in found and "compare@5: '==' -> '!='" in found
    assert "boolop@5: 'and' -> 'or'" in found
    assert "arith@6: '*' -> '+'" in found and "arith@7: '-' -> '+'" in found and "arith@5: '%' -> '//'" in found
    assert "constant@3: '0' -> '1'" in found and "constant@7: '1' -> '0'" in found
    assert "drop_line@3: 'total = 0' -> ''" in found
    assert not any(d.startswith("drop_line@1") for d in found)  # shares its line with a comment


def test_mutants_change_one_spot_and_keep_the_rest() -> None:
    for mutation, code in mutants(SOURCE):
        ast.parse(code)
        assert code != SOURCE
        assert "# count" in code  # untouched text survives
        if mutation.line != 7 or mutation.kind != "drop_line":
            assert 'print(total' in code and '"né")' in code  # non-ASCII: offsets are bytes
        if mutation.kind != "drop_line":
            assert len(code.splitlines()) == len(SOURCE.splitlines())
            changed = [a for a, b in zip(SOURCE.splitlines(), code.splitlines()) if a != b]
            assert len(changed) == 1
        else:
            assert len(code.splitlines()) == len(SOURCE.splitlines()) - 1


def test_no_mutation_of_unparsable_or_unusual_literals() -> None:
    assert candidate_mutations("def broken(:\n") == []
    assert not any(m.kind == "constant" for m in candidate_mutations("x = 0x10\ny = 1_000\n"))
    assert not any(m.kind == "constant" for m in candidate_mutations("flag = True\n"))
