"""Peak memory and step time of forward+backward for the MTP loss implementations, side by side.

Each case runs in its own fresh subprocess on the same model (same parameters, same tokens):
  seq4    4-head sequential loss (wmtp_core.losses, impl="sequential")
  seq1    1-head next-token loss, same sequential implementation
  plain1  plain 1-head next-token loss: full (B, S, V) logits + F.cross_entropy
  naive4  4-head naive loss (full logits per head)
Prints JSON with the ratios of issue 9: (a) seq4 / seq1 (target <= 1.10), (b) seq4 / plain1 (target <= 0.5),
(c) naive4 / plain1 (contrast), and the step-time ratio seq4 / plain1 (target <= 1.3). The four cases run in turn
for `--rounds` rounds (default 5, interleaved: a changing machine load hits every case alike); every figure is
the median and range over rounds, ratios are taken within a round. `machine` says whether other work kept the
cores busy meanwhile (benchmarks/_rounds.py; times are then upper bounds; memory is unaffected).

Memory: on CUDA the peak allocated bytes of the step; on CPU the peak RSS of the first step minus the RSS just
before it (ru_maxrss, plus a 1 ms sampler thread), with glibc's mmap threshold fixed at 64 KiB so freed tensors
leave the RSS. Step time: the measured step, or the best of --timed-steps further warm steps. Usage:
    flock /work/heavy.lock uv run python benchmarks/mtp_loss_memory.py [--rounds 5] [--dim 256] [--seq 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rounds import load_now, load_report, spread  # noqa: E402

CASES = ("seq4", "seq1", "plain1", "naive4")


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--trunk-layers", type=int, default=2)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--n-future", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--chunk-size", type=int, default=512)
    p.add_argument("--timed-steps", type=int, default=0, help="extra warm steps to time (0: time the measured step)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the four cases")
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    return p.parse_args(argv)


class _RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.001)


def _build(args: argparse.Namespace):
    import torch

    from vendor.meta_llama.model import ModelArgs, Transformer

    torch.manual_seed(0)
    margs = ModelArgs(dim=args.dim, n_layers=args.trunk_layers + args.n_future, n_heads=args.n_heads,
                      vocab_size=args.vocab, multiple_of=64, n_future_tokens=args.n_future,
                      max_seq_len=args.seq)
    model = Transformer(margs).to(args.device)
    tokens = torch.randint(3, args.vocab, (args.batch, args.seq + args.n_future), device=args.device)
    labels = torch.stack([tokens[:, k + 1: k + 1 + args.seq] for k in range(args.n_future)], dim=-1)
    return model, tokens[:, : args.seq], labels


def _step(case: str, model, tokens, labels, chunk_size: int) -> None:
    import torch
    import torch.nn.functional as F

    from wmtp_core.losses import count_valid_labels, weighted_mtp_loss

    model.zero_grad(set_to_none=False)
    trunk = model.trunk_forward(tokens)
    if case == "plain1":
        logits = model.head_logits(trunk, 0)  # (B, S, V)
        F.cross_entropy(logits.flatten(0, 1), labels[..., 0].flatten()).backward()
        return
    heads = labels[..., :1] if case == "seq1" else labels
    weights = torch.ones(tokens.shape, device=tokens.device)
    impl = "naive" if case == "naive4" else "sequential"
    out = weighted_mtp_loss(model, trunk, heads, weights, count_valid_labels(heads), impl=impl,
                            chunk_size=chunk_size)
    out.backward()


def _run_case(args: argparse.Namespace) -> dict[str, float]:
    import psutil
    import torch

    torch.set_num_threads(args.threads)
    model, tokens, labels = _build(args)
    for p in model.parameters():  # gradients allocated before measuring, as after a first step
        p.grad = torch.zeros_like(p)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = psutil.Process().memory_info().rss
    sampler = _RssSampler()
    sampler.start()
    start_first = time.perf_counter()
    _step(args.case, model, tokens, labels, args.chunk_size)
    if cuda:
        torch.cuda.synchronize()
    sampler.stop.set()
    sampler.join()
    peak_rss = max(sampler.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    peak = (torch.cuda.max_memory_allocated() - base) if cuda else (peak_rss - base_rss)
    times = [time.perf_counter() - start_first]
    for _ in range(args.timed_steps):
        start = time.perf_counter()
        _step(args.case, model, tokens, labels, args.chunk_size)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"peak_bytes": float(peak), "step_s": min(times[1:] or times)}


def _case_env() -> dict[str, str]:
    """Fixed glibc mmap threshold: freed tensors go back to the OS, so RSS follows live memory."""
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "65536")
    return env


def _case(case: str, argv: list[str]) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--case", case]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_case_env())
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(f"case {case} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(rounds: list[dict[str, dict[str, float]]]) -> dict:
    """Per-case peak MiB and step seconds, and the within-round ratios, as median and range over rounds."""
    def ratio(num: str, den: str, key: str) -> dict:
        return spread([r[num][key] / r[den][key] for r in rounds])

    return {"peak_mib": {c: spread([r[c]["peak_bytes"] / 2**20 for r in rounds], 1) for c in CASES},
            "step_s": {c: spread([r[c]["step_s"] for r in rounds]) for c in CASES},
            "ratio_a_seq4_over_seq1": ratio("seq4", "seq1", "peak_bytes"),
            "ratio_b_seq4_over_plain1": ratio("seq4", "plain1", "peak_bytes"),
            "ratio_c_naive4_over_plain1": ratio("naive4", "plain1", "peak_bytes"),
            "time_ratio_seq4_over_plain1": ratio("seq4", "plain1", "step_s"),
            "targets": {"a": 1.10, "b": 0.5, "time": 1.3}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if args.case:
        print(json.dumps(_run_case(args)))
        return 0
    if args.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    before = load_now()
    rounds = [{case: _case(case, argv) for case in CASES} for _ in range(args.rounds)]
    report = {
        "config": {k: v for k, v in vars(args).items() if k != "case"},
        "memory_measure": "cuda max_memory_allocated delta" if args.device.startswith("cuda")
        else "cpu peak RSS delta of the first forward+backward",
        **summarize(rounds),
        "machine": load_report(before, load_now()),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
