"""Self-speculative vs plain greedy decoding, side by side in one run; prints JSON.

Two models of one shape (default: dim 512, 4 attention heads, FFN 1024, 8 trunk blocks + 4 MTP heads, the
project's 8000-piece code tokenizer, fp32, CPU):
  trained  trained for `--steps` CPU steps (sum of the 4 heads' cross-entropies, AdamW) on the first `--solutions`
           shipped MBPP reference solutions, so that the extra heads learn to agree with head 0 on that code; kept
           under storage/runs/bench/ keyed by every setting and the corpus hash, and reused when present
  random   the same shape with random weights: no draft is accepted (the cost of speculation at zero acceptance)
For each model the same prompts (the first `--prompt-tokens` tokens of solutions) are decoded greedily
(`generate`) and speculatively (`speculative_generate`, adaptive draft length unless `--draft-len` fixes it;
`--sweep` adds every fixed draft length and the timed adaptive schedule), alternating within each of `--rounds`
rounds (>= 5). Per model: acceptance per head, tokens per forward, tokens/s of each (median and range over
rounds), the per-round ratio (median and range), and whether every output was identical. `machine` says whether
other work kept the cores busy meanwhile (benchmarks/_rounds.py; timings are then lower bounds on speed; the ratio
is measured side by side either way).

Why 8 trunk blocks by default: batch-1 decoding of a real model streams its weights from DRAM every step (the 7B's
extra heads are 3 of 32 blocks), and speculation pays because verifying k+1 tokens reads those weights once. The
6-block micro model (`--trunk-layers 2`) reads 46 MiB of fp32 weights per greedy step, and on this CPU it behaves
as cache-resident: a chain of 1-row matmuls streams ~15 GB/s while its weights total under ~56 MiB and ~7 GB/s past
~100 MiB. Each 10 MiB extra head pushes a speculative step past that, so everything it reads slows down (measured:
the raw forward of 2 tokens + 1 draft costs 1.53x a greedy step, 3 + 2 costs 2.34x), holding the micro shape near
1.3x at best whatever the acceptance. `shape.greedy_step_weights_mib` and `shape.draft_cost` in the output say
which regime a run is in.

    flock /work/heavy.lock uv run python benchmarks/speculative.py [--steps 400] [--rounds 5] [--threads 1] [--sweep]
Targets (issue 17): trained ratio > 1.3 with identical outputs; random ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rounds import load_now, load_report, spread  # noqa: E402
from _shape import add_shape_args, micro_model_args  # noqa: E402

from vendor.meta_llama.model import ModelArgs, Transformer  # noqa: E402
from vendor.meta_llama.tokenizer import Tokenizer  # noqa: E402
from wmtp_core import paths  # noqa: E402
from wmtp_core.eval.generate import SamplingConfig, generate  # noqa: E402
from wmtp_core.eval.speculative import (  # noqa: E402
    SpeculativeConfig,
    SpeculativeStats,
    draft_cost,
    speculative_generate,
)
from wmtp_core.io import atomic_output, atomic_write_json, read_json  # noqa: E402

MBPP = paths.DATASETS_ROOT / "mbpp" / "source" / "mbpp.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(p)
    p.set_defaults(trunk_layers=8)  # weights streamed from DRAM, as in real decoding (module doc)
    p.add_argument("--solutions", type=int, default=32, help="MBPP solutions to train on")
    p.add_argument("--steps", type=int, default=400, help="training steps (bounded CPU work: ~17 min on 2 cores)")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--prompt-tokens", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--draft-len", type=int, default=None, help="fixed draft length (default: adaptive)")
    p.add_argument("--sweep", action="store_true",
                   help="also time every fixed draft length and the timed adaptive schedule in the same rounds")
    p.add_argument("--threads", type=int, default=1, help="torch threads while decoding")
    p.add_argument("--train-threads", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=paths.RUNS_ROOT / "bench")
    return p.parse_args(argv)


def model_args(a: argparse.Namespace, vocab: int) -> ModelArgs:
    return micro_model_args(a, vocab, max_seq_len=max(a.seq, a.prompt_tokens + a.max_new_tokens))


def corpus(tokenizer: Tokenizer, n: int) -> list[list[int]]:
    """Token ids (BOS + code + EOS) of the first n MBPP reference solutions."""
    rows = []
    with MBPP.open(encoding="utf-8") as fh:
        for line in fh:
            if len(rows) == n:
                break
            code = json.loads(line)["code"].replace("\r\n", "\n")
            rows.append(tokenizer.encode(code, bos=True) + [tokenizer.eos_id])
    return rows


def mtp_loss(model: Transformer, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over heads k of the cross-entropy of head k at position t against token t + k + 1 (-100: padding)."""
    logits = model(tokens)  # (B, S, F, V)
    loss = logits.new_zeros(())
    for k in range(model.n_future):
        loss = loss + torch.nn.functional.cross_entropy(
            logits[:, : tokens.shape[1] - k - 1, k].reshape(-1, logits.shape[-1]), targets[:, k + 1:].reshape(-1))
    return loss


def batches(rows: list[list[int]], seq: int, batch: int, pad_id: int, gen: torch.Generator):
    """Endless random batches (tokens, targets) of whole solutions, cut to seq and right-padded."""
    while True:
        picks = torch.randint(len(rows), (batch,), generator=gen).tolist()
        tokens = torch.full((batch, seq), pad_id, dtype=torch.long)
        targets = torch.full((batch, seq), -100, dtype=torch.long)
        for i, row in enumerate(picks):
            ids = torch.tensor(rows[row][:seq])
            tokens[i, : len(ids)] = targets[i, : len(ids)] = ids
        yield tokens, targets


def train(a: argparse.Namespace, tokenizer: Tokenizer, rows: list[list[int]]) -> tuple[Transformer, dict]:
    torch.manual_seed(0)
    model = Transformer(model_args(a, tokenizer.n_words)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr)
    data, start, losses = batches(rows, a.seq, a.batch, tokenizer.pad_id, torch.Generator().manual_seed(0)), \
        time.perf_counter(), []
    torch.set_num_threads(a.train_threads)
    for step in range(a.steps):
        loss = mtp_loss(model, *next(data))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % 25 == 0:
            print(f"train step {step}: loss {losses[-1]:.3f} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    torch.set_num_threads(a.threads)
    info = {"steps": a.steps, "train_s": round(time.perf_counter() - start, 1),
            "loss_first": round(losses[0], 3) if losses else None, "loss_last": round(losses[-1], 3) if losses else None}
    return model.eval(), info


def trained_model(a: argparse.Namespace, tokenizer: Tokenizer, rows: list[list[int]]) -> tuple[Transformer, dict]:
    """Train, or reuse the checkpoint of an earlier run with the same settings and corpus."""
    key = json.dumps({k: getattr(a, k) for k in ("dim", "n_heads", "trunk_layers", "n_future", "ffn", "solutions",
                                                 "steps", "seq", "batch", "lr")} | {"rows": rows}, sort_keys=True)
    stem = a.cache_dir / f"speculative-micro-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    weights, info_path = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if weights.is_file() and info_path.is_file():
        model = Transformer(model_args(a, tokenizer.n_words))
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval(), read_json(info_path) | {"reused": str(weights)}
    model, info = train(a, tokenizer, rows)
    a.cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(weights) as tmp:
        torch.save(model.state_dict(), tmp)
    atomic_write_json(info_path, info)
    return model, info


def greedy_step_bytes(model: Transformer) -> int:
    """Weight bytes one greedy step reads: trunk + head 0 blocks and the output projection (one embedding row)."""
    params = [p for m in (model.layers, model.norm, model.output) for p in m.parameters()]
    return sum(p.numel() * p.element_size() for p in params)


def _specs(a: argparse.Namespace, n_future: int) -> dict[str, SpeculativeConfig]:
    """The speculative variants timed against greedy: the default (adaptive, or --draft-len fixed) and, with
    --sweep, every fixed draft length and the adaptive schedule driven by measured step times."""
    main = SpeculativeConfig() if a.draft_len is None else SpeculativeConfig(draft_len=a.draft_len, adaptive=False)
    specs = {"speculative": main}
    if a.sweep:
        specs |= {f"fixed_{k}": SpeculativeConfig(draft_len=k, adaptive=False) for k in range(1, n_future)}
        specs["timed"] = SpeculativeConfig(timed=True)
    return specs


def compare(model: Transformer, tokenizer: Tokenizer, prompts: list[list[int]], a: argparse.Namespace) -> dict:
    """Greedy and each speculative variant, alternating per prompt within each round; rates and ratios per round."""
    cfg = SamplingConfig(max_new_tokens=a.max_new_tokens)
    specs = _specs(a, model.n_future)
    stats = {name: SpeculativeStats() for name in specs}
    identical = True
    rates: dict[str, list[float]] = {name: [] for name in ["greedy", *specs]}
    for _ in range(a.rounds):
        seconds, tokens = dict.fromkeys(rates, 0.0), dict.fromkeys(rates, 0)
        for ids in prompts:
            start = time.perf_counter()
            plain = generate(model, [ids], tokenizer.eos_id, tokenizer.pad_id, cfg, tokenizer.decode)[0]
            seconds["greedy"] += time.perf_counter() - start
            tokens["greedy"] += len(plain.tokens)
            for name, spec in specs.items():
                start = time.perf_counter()
                fast = speculative_generate(model, [ids], tokenizer.eos_id, tokenizer.pad_id, cfg, tokenizer.decode,
                                            stats[name], spec)[0]
                seconds[name] += time.perf_counter() - start
                tokens[name] += len(fast.tokens)
                identical &= plain.tokens == fast.tokens
        for side in rates:
            rates[side].append(tokens[side] / seconds[side])
    out = {"greedy_tokens_per_s": spread(rates["greedy"], 1), "outputs_identical": identical}
    for name in specs:
        ratios = [s / g for s, g in zip(rates[name], rates["greedy"])]
        side = {"tokens_per_s": spread(rates[name], 1), "ratio_over_greedy": spread(ratios),
                "draft_acceptance": round(stats[name].acceptance_rate, 3),
                "head_acceptance": {k: round(v, 3) for k, v in stats[name].head_acceptance().items()},
                "tokens_per_forward": round(stats[name].tokens_per_forward, 3)}
        if name == "speculative":
            out |= {"speculative_tokens_per_s": side.pop("tokens_per_s"),
                    "ratio_speculative_over_greedy": side.pop("ratio_over_greedy"), **side}
        else:
            out[name] = side
    return out


def run(a: argparse.Namespace) -> dict:
    if a.rounds < 1:
        raise ValueError("--rounds must be >= 1")
    torch.set_num_threads(a.threads)
    tokenizer = Tokenizer(paths.CODE_TOKENIZER)
    rows = corpus(tokenizer, a.solutions)
    prompts = [row[: a.prompt_tokens] for row in rows[: a.prompts]]
    trained, train_info = trained_model(a, tokenizer, rows)
    torch.manual_seed(1)
    random_model = Transformer(model_args(a, tokenizer.n_words)).eval()
    before = load_now()
    results = {"trained": compare(trained, tokenizer, prompts, a) | {"training": train_info},
               "random": compare(random_model, tokenizer, prompts, a)}
    return {"shape": {"dim": a.dim, "n_heads": a.n_heads, "trunk_layers": a.trunk_layers, "n_future": a.n_future,
                      "ffn": a.ffn, "vocab": tokenizer.n_words, "dtype": "float32",
                      "greedy_step_weights_mib": round(greedy_step_bytes(trained) / 2**20, 1),
                      "draft_cost": round(draft_cost(trained), 4)},
            "prompts": len(prompts), "prompt_tokens": a.prompt_tokens, "max_new_tokens": a.max_new_tokens,
            "draft": "adaptive" if a.draft_len is None else f"fixed {a.draft_len}", "threads": a.threads,
            **results, "targets": {"trained_ratio": "> 1.3, identical", "random_ratio": ">= 0.9"},
            "machine": load_report(before, load_now())}


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
