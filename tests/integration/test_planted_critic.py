"""The planted-signal world: one-token mutants verified by execution, and a micro critic trained as in Stage 1
(trunk co-training, CPU, seeded) that localises the planted token while the position-only controls cannot."""

from __future__ import annotations

import json
import re

import pytest

from wmtp_core.cli import main
from wmtp_core.data.planted import CharTokenizer, planted_rows, run_program
from wmtp_core.eval.critic_report import SCHEMA


@pytest.mark.parametrize("rule", ["identity", "prompt"])
def test_planted_rows_are_one_token_mutants_that_fail(rule: str) -> None:
    rows = planted_rows(40, seed=3, rule=rule)
    tok = CharTokenizer()
    by_task: dict[str, dict[bool, dict]] = {}
    for row in rows:
        by_task.setdefault(row["metadata"]["task_id"], {})[row["metadata"]["is_correct"]] = row
    assert len(by_task) == 40
    for pair in by_task.values():
        good, bad = pair[True]["response"], pair[False]["response"]
        assert len(good) == len(bad)
        diffs = [i for i, (x, y) in enumerate(zip(good, bad, strict=True)) if x != y]
        assert diffs == [pair[False]["divergence_char"]]  # exactly one character = one CharTokenizer token
        code_good, code_bad = good.removesuffix("</s>"), bad.removesuffix("</s>")
        assert len(tok.encode(code_good)) == len(code_good)
        formula = re.fullmatch(r"# f\(a, b\) = (.*)\n", pair[True]["prompt"])[1]
        for a, b in ((3, 5), (7, 2), (-4, 6)):  # the correct program computes the prompt's formula
            assert run_program(code_good, a, b) == eval(formula, {}, {"a": a, "b": b})  # noqa: S307
        assert any(run_program(code_bad, a, b) != run_program(code_good, a, b) for a, b in ((3, 5), (7, 2), (-4, 6)))


@pytest.mark.slow
def test_micro_critic_localises_the_planted_token_and_controls_do_not(tmp_path) -> None:
    """`wmtp critic-report --synthetic` (seed 0, the PlantedSettings defaults: 80 Stage 1 steps)."""
    assert main(["critic-report", "--synthetic", "--seed", "0", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "reports" / "critic_report.json").read_text())
    assert data["schema"] == SCHEMA and data["n_rows"] == {"correct": 100, "incorrect": 100}
    assert data["n_localisation_rows"] == 100
    loc, cls = data["localisation_auroc"], data["classification_auroc"]
    assert loc["critic"] >= 0.9, data
    assert abs(loc["constant_critic"] - 0.5) <= 0.1 and abs(loc["position_matched"] - 0.5) <= 0.1, data
    assert cls["constant_critic"] == 0.5 and abs(cls["position_matched"] - 0.5) <= 0.1, data
