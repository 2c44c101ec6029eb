"""Training step time of the three experiments, side by side, through the real loop (wmtp_core.train).

Every case runs `--warmup` + `--steps` full optimizer steps (forward, weighted MTP loss, backward, clip, AdamW) of
`StageLoop` on the same model shape and tokens. Step times come from ONE process stepping the cases round-robin
(a shared, changing machine load then hits every case alike); tokens/s and peak RSS (ru_maxrss) of the baseline
case alone come from a fresh subprocess (one warm-up + one timed step). Cases:
  ntp           next-token-only: the same loop and sequential loss with head 0 only
  baseline      Baseline MTP, all heads (weights 1)
  verifiable    Verifiable Critic WMTP (value head, GAE weights, critic loss)
  rho1          Rho-1 Weighted (reference forward + excess-loss top-k weights, KL monitor)
  baseline_ref  baseline + the same reference forward Rho-1 runs (the fair denominator for rho1)
Prints JSON: median step seconds, tokens/s and peak RSS per case, and the ratios of issue 4
(baseline/ntp <= 1.25, verifiable/baseline <= 1.10, rho1/baseline_ref <= 1.05), plus the headline tokens/s and
peak RSS of the baseline case against the comparable implementation (213 tokens/s, 6.75 GB at 2 x 1024 fp32), with
glibc's default allocator and with `train.cpu_mmap_threshold_mb: 1` (lower RSS, slower). `flop_model` measures this
machine's fp32 matmul rate in the same run and turns it into a tokens/s ceiling for the shape, and gives the
baseline/ntp FLOP ratio at this shape and at Meta's 7B_1T_4 shape (what the 1.25 target is about).

Default shape: the micro model (dim 512, 4 attention heads, 2 trunk blocks + 4 MTP heads, FFN 1024,
vocab 32000; ~48.6M parameters) at batch 2 x 1024, fp32, CPU.
    uv run python benchmarks/step_time.py [--steps 2] [--warmup 1] [--seq 1024] [--batch 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = ("ntp", "baseline", "verifiable", "rho1", "baseline_ref")
COMPARABLE = {"tokens_per_s": 213.0, "peak_rss_gb": 6.75}


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--trunk-layers", type=int, default=2)
    p.add_argument("--n-future", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--cpu-mmap-threshold-mb", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    return p.parse_args()


def _model(a: argparse.Namespace, seed: int):
    import torch

    from vendor.meta_llama.model import ModelArgs, Transformer
    from wmtp_core.artifacts.dims import with_ffn_hidden

    torch.manual_seed(seed)
    args = ModelArgs(dim=a.dim, n_layers=a.trunk_layers + a.n_future, n_heads=a.n_heads, vocab_size=a.vocab,
                     n_future_tokens=a.n_future, max_seq_len=a.seq)
    return Transformer(with_ffn_hidden(args, a.ffn))


class _Source:
    """Fixed synthetic batches: prompt = first eighth of each row, the rest is response (+ EOS at the end)."""

    def __init__(self, a: argparse.Namespace, n_future: int) -> None:
        import torch

        from wmtp_core.data.collate import MTPCollator
        from wmtp_core.train.sampler import ResumableSampler

        gen = torch.Generator().manual_seed(0)
        self.rows = [{"input_ids": torch.randint(3, a.vocab, (a.seq,), generator=gen).tolist(),
                      "response_start": a.seq // 8, "is_correct": i % 2 == 0, "task_id": str(i), "source": "bench"}
                     for i in range(4 * a.batch)]
        self.sampler = ResumableSampler(len(self.rows), a.batch, seed=0)
        self.collate = MTPCollator(pad_id=0, n_future=n_future)

    def next_batch(self) -> dict:
        return self.collate([self.rows[i] for i in self.sampler.next_indices()])


def _reference_forward(ref, batch: dict, chunk: int) -> None:
    """What Rho-1 adds per micro-batch: reference trunk + next-token head + chunked CE, no grad."""
    import torch

    from wmtp_core.losses import linear_ce

    with torch.no_grad():
        hidden = ref.norm(ref.head_hidden(ref.trunk_forward(batch["input_ids"]), 0)).flatten(0, 1)
        linear_ce(hidden, ref.output.weight, batch["labels"][..., 0].flatten(), chunk)


def _build_case(a: argparse.Namespace, case: str):
    """A StageLoop for `case` (its own model copies, same seeds and tokens as every other case)."""
    import torch

    from tests.fixtures.train import CONFIGS
    from wmtp_core.config import load_config
    from wmtp_core.model.value_head import ValueHead
    from wmtp_core.train.loop import LoopSettings, StageLoop
    from wmtp_core.train.stages import Models, build_strategy, stage2_plan

    experiment = case if case in ("verifiable", "rho1") else "baseline"
    cfg = load_config(CONFIGS / "defaults.yaml", CONFIGS / f"recipe.{experiment}.yaml", None,
                      [f"train.batch_size={a.batch}", "train.grad_accum=1", "train.loss_impl=sequential",
                       f"train.chunk_size={a.chunk_size}", f"rho1.chunk_size={a.chunk_size}"])
    models = Models(_model(a, seed=0))
    if case == "verifiable":
        models.value_head = ValueHead(a.dim)
    if case in ("rho1", "baseline_ref"):
        models.reference = _model(a, seed=1).requires_grad_(False).eval()
    source = _Source(a, 1 if case == "ntp" else a.n_future)
    plan = stage2_plan(cfg, models, build_strategy(cfg, models), source, total_steps=10**6)
    if case == "baseline_ref":
        inner = plan.micro_step
        plan.micro_step = lambda batch, denoms: (_reference_forward(models.reference, batch, a.chunk_size),
                                                 inner(batch, denoms))[1]
    settings = LoopSettings(grad_accum=1, checkpoint_every=10**9, keep_checkpoints=1, progress_bar=False,
                            device=torch.device("cpu"), amp_dtype=None, checkpoint_root=Path("/nonexistent"),
                            config_hash="bench")
    return StageLoop(plan, settings, cfg.optim, lambda m, s: None), models


def _timed_step(loop) -> float:
    start = time.perf_counter()
    loop.train_step()
    return time.perf_counter() - start


def _interleaved(a: argparse.Namespace, cases: list[str]) -> dict:
    """All cases in one process, stepping round-robin, so a changing machine load hits every case alike."""
    import torch

    torch.set_num_threads(a.threads)
    loops = {c: _build_case(a, c)[0] for c in cases}
    times: dict[str, list[float]] = {c: [] for c in cases}
    for r in range(a.warmup + a.steps):
        for case, loop in loops.items():
            dt = _timed_step(loop)
            if r >= a.warmup:
                times[case].append(dt)
            print(json.dumps({"round": r, "case": case, "step_s": round(dt, 4)}), file=sys.stderr, flush=True)
    out = {}
    for case, ts in times.items():
        step_s = statistics.median(ts)
        out[case] = {"step_s": round(step_s, 4), "tokens_per_s": round(a.batch * a.seq / step_s, 1),
                     "steps_s": [round(t, 4) for t in ts]}
    return out


def _rss_case(a: argparse.Namespace) -> dict:
    """Fresh process: one warm-up step, then one timed step; peak RSS of the whole process."""
    import torch

    from wmtp_core.train.allocator import set_mmap_threshold

    torch.set_num_threads(a.threads)
    if a.cpu_mmap_threshold_mb is not None:  # what `wmtp train` does with train.cpu_mmap_threshold_mb
        set_mmap_threshold(a.cpu_mmap_threshold_mb)
    loop, models = _build_case(a, a.case)
    times = [_timed_step(loop) for _ in range(3)]  # the first is a warm-up; RSS peaks grow over the first steps
    step_s = statistics.median(times[1:])
    return {"case": a.case, "cpu_mmap_threshold_mb": a.cpu_mmap_threshold_mb, "step_s": round(step_s, 4),
            "tokens_per_s": round(a.batch * a.seq / step_s, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 3),
            "policy_params": sum(p.numel() for p in models.policy.parameters())}


def _alone(a: argparse.Namespace, extra: list[str]) -> dict:
    """The baseline case in a fresh process (its own peak RSS)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--case", "baseline", *extra],
                          capture_output=True, text=True, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"baseline RSS case failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"baseline_alone": result}), file=sys.stderr, flush=True)
    return result


def _sgemm_gflops(threads: int) -> float:
    """This machine's fp32 matmul rate (best of a few large square products): the ceiling every step shares."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return best


def _flops_per_token(dim: int, ffn: int, blocks: int, heads_used: int, vocab: int, seq: int) -> float:
    """Training FLOPs per token (forward + backward = 3 x forward, 2 per multiply-add): `blocks` transformer
    blocks (attention projections, SwiGLU FFN, full S x S attention scores) plus one output projection per head."""
    block = 2 * (4 * dim * dim + 3 * dim * ffn) + 2 * 2 * seq * dim
    return 3 * (blocks * block + heads_used * 2 * vocab * dim)


def _flop_model(a: argparse.Namespace, sgemm: float) -> dict:
    per = {"ntp": _flops_per_token(a.dim, a.ffn, a.trunk_layers + 1, 1, a.vocab, a.seq),
           "baseline": _flops_per_token(a.dim, a.ffn, a.trunk_layers + a.n_future, a.n_future, a.vocab, a.seq)}
    # Meta 7B_1T_4: dim 4096, FFN 11008, 32 blocks (28 trunk + 4 heads) vs a 32-block next-token model, S 2048
    seven_b = (_flops_per_token(4096, 11008, 32, 4, 32000, 2048) / _flops_per_token(4096, 11008, 32, 1, 32000, 2048))
    return {"sgemm_gflops_measured": round(sgemm, 1),
            "flops_per_token": {k: round(v / 1e6, 1) for k, v in per.items()},
            "flops_per_token_unit": "MFLOP",
            "ceiling_tokens_per_s_baseline": round(sgemm * 1e9 / per["baseline"], 1),
            "baseline_over_ntp_flop_ratio": round(per["baseline"] / per["ntp"], 3),
            "baseline_over_ntp_flop_ratio_at_7b_1t_4": round(seven_b, 3)}


def main() -> None:
    a = _parse()
    if a.case:
        print(json.dumps(_rss_case(a)))
        return
    root = Path(__file__).resolve().parents[1]
    alone = _alone(a, [])
    low_memory = _alone(a, ["--cpu-mmap-threshold-mb", "1"])
    sys.path.insert(0, str(root))
    results = _interleaved(a, a.cases.split(","))
    summary = _summary(a, results, alone)
    summary["baseline_alone_low_memory"] = low_memory
    summary["vs_comparable"]["low_memory"] = _vs(low_memory)
    summary["flop_model"] = _flop_model(a, _sgemm_gflops(a.threads))
    print(json.dumps(summary, indent=2))


def _ratio(results: dict, num: str, den: str) -> float | None:
    if num in results and den in results:
        return round(results[num]["step_s"] / results[den]["step_s"], 3)
    return None


def _summary(a: argparse.Namespace, results: dict, alone: dict) -> dict:
    return {"shape": {"dim": a.dim, "n_heads": a.n_heads, "trunk_layers": a.trunk_layers, "n_future": a.n_future,
                      "ffn": a.ffn, "vocab": a.vocab, "batch": a.batch, "seq": a.seq, "dtype": "float32",
                      "threads": a.threads, "steps": a.steps, "warmup": a.warmup,
                      "policy_params": alone["policy_params"]},
            "interleaved_cases": results,
            "ratios": {"baseline_over_ntp": _ratio(results, "baseline", "ntp"),
                       "verifiable_over_baseline": _ratio(results, "verifiable", "baseline"),
                       "rho1_over_baseline_plus_ref": _ratio(results, "rho1", "baseline_ref")},
            "targets": {"baseline_over_ntp": 1.25, "verifiable_over_baseline": 1.10,
                        "rho1_over_baseline_plus_ref": 1.05},
            "baseline_alone": alone,
            "vs_comparable": {"comparable": COMPARABLE, "default": _vs(alone),
                              "targets": {"throughput_ratio": ">= 2.0", "memory_ratio": "<= 0.3"}}}


def _vs(case: dict) -> dict:
    return {"throughput_ratio": round(case["tokens_per_s"] / COMPARABLE["tokens_per_s"], 3),
            "memory_ratio": round(case["peak_rss_gb"] / COMPARABLE["peak_rss_gb"], 3)}


if __name__ == "__main__":
    main()
