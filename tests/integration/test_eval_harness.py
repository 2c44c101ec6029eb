"""`evaluate()` and `wmtp eval` end to end on a tiny converted model dir (random weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.models import tiny_model_dir
from wmtp_core.cli import main
from wmtp_core.eval.harness import eval_prompt, evaluate, pass_counts
from wmtp_core.eval.passk import mean_pass_at_k
from wmtp_core.eval.problems import load_problems

pytestmark = pytest.mark.integration


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_writes_samples_results_and_summary(tmp_path: Path) -> None:
    model_dir = tiny_model_dir(tmp_path)
    result = evaluate(model_dir, "humaneval", n=2, ks=[1, 2], limit=2, out_dir=tmp_path / "out",
                      temperature=0.8, max_new_tokens=12, seed=3)
    samples, results = _rows(result.samples_path), _rows(result.results_path)
    assert len(samples) == len(results) == 4 and result.n_problems == 2
    assert {(r["task_id"], r["sample_index"]) for r in results} == {
        (t, i) for t in ("humaneval-0_A", "humaneval-1_A") for i in (0, 1)}
    assert all(r["status"] in ("passed", "failed", "timeout", "error") for r in results)
    assert result.pass_at_k == mean_pass_at_k(pass_counts(results).values(), [1, 2])
    summary = json.loads(result.summary_path.read_text())
    assert summary["pass_at_k"] == result.pass_at_k and summary["sandbox_isolation"]
    assert summary["sandbox_filesystem"] == "private-root"
    assert not summary["speculative"]  # sampling (temperature 0.8): plain decoding
    metrics = result.metrics()
    assert metrics["pass@1"] == result.pass_at_k["pass@1"] and metrics["generated_tokens"] > 0
    again = evaluate(model_dir, "humaneval", n=2, ks=[1], limit=2, out_dir=tmp_path / "again",
                     temperature=0.8, max_new_tokens=12, seed=3)
    assert [s["completion"] for s in _rows(again.samples_path)] == [s["completion"] for s in samples]


def test_cli_eval_speculative_matches_greedy(tmp_path: Path) -> None:
    model_dir = tiny_model_dir(tmp_path)
    common = ["eval", "--model", str(model_dir), "--dataset", "mbpp", "--n", "1", "--k", "1", "--limit", "2",
              "--max-new-tokens", "16"]
    assert main(common + ["--out", str(tmp_path / "greedy"), "--no-speculative"]) == 0
    assert main(common + ["--out", str(tmp_path / "spec")]) == 0  # greedy + extra heads: speculative by default
    assert main(common + ["--out", str(tmp_path / "k1"), "--speculative", "--draft-len", "1"]) == 0
    greedy = [s["completion"] for s in _rows(tmp_path / "greedy" / "samples.jsonl")]
    for name, draft_len in (("spec", 3), ("k1", 1)):
        assert [s["completion"] for s in _rows(tmp_path / name / "samples.jsonl")] == greedy
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        gen = summary["generation"]
        assert summary["speculative"] and gen["draft_len"] == draft_len and gen["tokens_per_forward"] >= 1.0
        assert set(gen["head_acceptance"]) <= {f"head{j}" for j in range(1, draft_len + 1)}
    plain = json.loads((tmp_path / "greedy" / "summary.json").read_text())
    assert not plain["speculative"] and "tokens_per_forward" not in plain["generation"]


def test_training_prompt_is_used_for_mbpp_and_codecontests(tmp_path: Path) -> None:
    from vendor.meta_llama.tokenizer import Tokenizer
    from wmtp_core import paths

    tokenizer = Tokenizer(paths.MISTRAL_TOKENIZER)
    for dataset in ("mbpp", "codecontests"):
        problem = load_problems(dataset, limit=1)[0]
        prompt = eval_prompt(problem, tokenizer, 4096)
        assert prompt.startswith("### Instruction:\n") and prompt.endswith("### Response:\n")
        short = eval_prompt(problem, tokenizer, 120)
        assert len(short) < len(prompt) or len(tokenizer.encode(prompt, bos=True)) <= 120
