"""What one batch-1 decoding step costs on this machine: the raw forwards speculative decoding is made of, and how
fast a chain of 1-row matmuls streams weights as their total grows. Prints JSON.

  step_cost  for a model of the given shape (random weights: cost does not depend on their values), the raw
             forward of a chunk of n tokens through trunk + head 0 with the KV cache, k extra heads at the chunk's
             last position and one output projection of n + k rows, relative to a greedy step (n 1, k 0); the
             speculative steps are (k + 1, k), the same chunks without drafting (k + 1, 0). Timed over `--rounds`
             rounds, every configuration once per round (median and range of the per-round ratio).
  stream     GiB/s of a chain of 1-row fp32 matmuls over `--stream-mib` distinct 1 MiB weights (512 x 512), per
             total size: where it drops, the weights no longer stay in cache.
No decoding bookkeeping is timed: this is the ceiling that `benchmarks/speculative.py`'s end-to-end ratios sit
under. `machine` says whether other work kept the cores busy meanwhile.

    flock /work/heavy.lock uv run python benchmarks/decode_cost.py [--trunk-layers 8] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rounds import load_now, load_report, spread  # noqa: E402
from _shape import add_shape_args, micro_model_args  # noqa: E402

from vendor.meta_llama.generation import KVCache  # noqa: E402
from vendor.meta_llama.model import Transformer  # noqa: E402

CHUNKS = [(1, 0), (2, 1), (3, 2), (4, 3), (2, 0), (3, 0), (4, 0)]  # (tokens fed, extra heads drafting)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(p)
    p.set_defaults(trunk_layers=8)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--steps", type=int, default=40, help="decoding steps timed per configuration and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stream-mib", default="16,32,48,56,64,80,96,128", help="weight totals for the stream curve")
    return p.parse_args(argv)


@torch.inference_mode()
def _steps(model: Transformer, n: int, k: int, steps: int) -> float:
    """Seconds per raw step of n fed tokens and k drafting heads, after an 8-token prefill."""
    cache = KVCache.for_model(model, 1, 8 + n * (steps + 1))
    start, tokens = 8, torch.randint(3, model.args.vocab_size, (1, 8))
    model.trunk_forward(tokens, 0, cache)
    began = time.perf_counter()
    for _ in range(steps):
        chunk = torch.randint(3, model.args.vocab_size, (1, n))
        rope = model.rope_for(start, n, chunk.device)
        trunk = model.trunk_forward(chunk, start, cache, None, None, rope)
        hidden = [model.head_hidden(trunk, 0, start, cache, None, None, rope)]
        hidden += [model.head_hidden(trunk, j, start, cache, None, None, rope)[:, -1:] for j in range(1, k + 1)]
        model.output(model.norm(torch.cat(hidden, dim=1))).argmax(-1)
        start += n
    return (time.perf_counter() - began) / steps


def step_cost(a: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = Transformer(micro_model_args(a, a.vocab, max_seq_len=8 + 4 * (a.steps + 1))).eval()
    seconds: dict[tuple[int, int], list[float]] = {c: [] for c in CHUNKS}
    for _ in range(a.rounds):
        for c in CHUNKS:
            seconds[c].append(_steps(model, *c, a.steps))
    greedy = seconds[(1, 0)]
    return {"greedy_step_ms": spread([s * 1e3 for s in greedy], 2),
            **{f"tokens{n}_drafts{k}": spread([s / g for s, g in zip(seconds[(n, k)], greedy)])
               for n, k in CHUNKS if (n, k) != (1, 0)}}


@torch.inference_mode()
def stream(sizes_mib: list[int], reps: int = 30) -> dict:
    x, out = torch.randn(1, 512), {}
    for mib in sizes_mib:
        weights = [torch.randn(512, 512) for _ in range(mib)]
        for w in weights:
            torch.nn.functional.linear(x, w)
        began = time.perf_counter()
        for _ in range(reps):
            for w in weights:
                torch.nn.functional.linear(x, w)
        out[f"{mib}_mib"] = round(mib / 1024 / ((time.perf_counter() - began) / reps), 1)
    return out


def run(a: argparse.Namespace) -> dict:
    if a.rounds < 1 or a.steps < 1:
        raise ValueError("--rounds and --steps must be >= 1")
    torch.set_num_threads(a.threads)
    before = load_now()
    costs = step_cost(a)
    curve = stream([int(s) for s in a.stream_mib.split(",") if s])
    return {"shape": {"dim": a.dim, "trunk_layers": a.trunk_layers, "n_future": a.n_future, "ffn": a.ffn,
                      "vocab": a.vocab, "dtype": "float32", "threads": a.threads},
            "step_cost_over_greedy": costs, "stream_gib_per_s": curve, "machine": load_report(before, load_now())}


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
