"""Training step time of the three experiments, side by side, through the real loop (wmtp_core.train).

Every case runs `--warmup` + `--steps` full optimizer steps (forward, weighted MTP loss, backward, clip, AdamW) of
`StageLoop` on the same model shape and tokens. Step times come from ONE process stepping the cases round-robin
(a shared, changing machine load then hits every case alike); after each round the fp32 matmul rate is measured
(one 2048^3 product), so every round has its own ceiling. Cases:
  ntp           next-token-only: the same loop and sequential loss with head 0 only
  baseline      Baseline MTP, all heads (weights 1)
  verifiable    Verifiable Critic WMTP (value head, GAE weights, critic loss)
  rho1          Rho-1 Weighted (reference forward + excess-loss top-k weights, KL monitor)
  baseline_ref  baseline + the same reference forward Rho-1 runs (the fair denominator for rho1)
Prints JSON: per case step seconds and tokens/s as median and range over the timed rounds (`--steps`, default 5);
the ratios of issue 4 (baseline/ntp <= 1.25, verifiable/baseline <= 1.10, rho1/baseline_ref <= 1.05) computed per
round and given as median and range; a FLOP model of the work the code does (per block: attention and FFN
projections on every fed token, causal attention scores S(S+1)/2 per row; the vocabulary projection on labelled
rows only, as the sequential loss does; backward = 2 x forward) and each round's fraction of that round's matmul
ceiling; peak RSS of the baseline case alone with glibc's default allocator and with
`train.cpu_mmap_threshold_mb: 1`, from fresh processes alternating for `--alone-rounds` rounds. Nothing is compared
with numbers taken elsewhere. `machine` says whether other work kept the cores busy meanwhile (benchmarks/_rounds.py).

Rows: `--rows synthetic` (default) random ids, every row `--seq` long (prompt = first eighth); `--rows real` the
shipped MBPP + CodeContests training rows (prepared into a temporary dir with the code tokenizer, cut to `--seq`),
each batch padded to its longest row: real tokens/s (non-padding) beside padded tokens/s.

Default shape: the micro model (dim 512, 4 attention heads, 2 trunk blocks + 4 MTP heads, FFN 1024,
vocab 32000; ~48.6M parameters) at batch 2 x 1024, fp32, CPU.
    flock /work/heavy.lock uv run python benchmarks/step_time.py [--steps 5] [--rows real] [--alone-rounds 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rounds import load_now, load_report, spread  # noqa: E402
from _shape import add_shape_args, micro_model_args  # noqa: E402

CASES = ("ntp", "baseline", "verifiable", "rho1", "baseline_ref")
RATIOS = {"baseline_over_ntp": ("baseline", "ntp", 1.25), "verifiable_over_baseline": ("verifiable", "baseline", 1.10),
          "rho1_over_baseline_plus_ref": ("rho1", "baseline_ref", 1.05)}
SGEMM_N = 2048


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(p)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=5, help="timed rounds (each steps every case once)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--rows", choices=("synthetic", "real"), default="synthetic")
    p.add_argument("--alone-rounds", type=int, default=5, help="fresh-process peak-RSS rounds per allocator (0: skip)")
    p.add_argument("--cpu-mmap-threshold-mb", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _model(a: argparse.Namespace, seed: int):
    import torch

    from vendor.meta_llama.model import Transformer

    torch.manual_seed(seed)
    return Transformer(micro_model_args(a, a.vocab, max_seq_len=a.seq))


def synthetic_rows(a: argparse.Namespace) -> list[dict]:
    """Random ids, every row `seq` long; prompt = first eighth, the rest is response."""
    import torch

    gen = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(3, a.vocab, (a.seq,), generator=gen).tolist(), "response_start": a.seq // 8,
             "is_correct": i % 2 == 0, "task_id": str(i), "source": "bench"} for i in range(4 * a.batch)]


def real_rows(a: argparse.Namespace) -> list[dict]:
    """The shipped MBPP + CodeContests training rows, prepared with the code tokenizer, encoded, cut to `seq`."""
    from wmtp_core import paths
    from wmtp_core.data.collate import encode_example
    from wmtp_core.data.layout import SourceLayout
    from wmtp_core.data.pipeline import prepare_datasets
    from wmtp_core.data.sp import SpTokenizer

    sources = ["mbpp", "codecontests"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for source in sources:
            (root / source).mkdir()
            (root / source / "source").symlink_to(paths.DATASETS_ROOT / source / "source")
        prepare_datasets(root, sources, paths.CODE_TOKENIZER, max_tokens=4096, allow_truncation=True)
        tokenizer = SpTokenizer(paths.CODE_TOKENIZER)
        rows = []
        for source in sources:
            with SourceLayout(root, source).split_file("train", None, False).open(encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    try:
                        rows.append(encode_example(tokenizer, row, a.seq))
                    except ValueError:  # a prompt longer than --seq leaves no response token: not trainable
                        continue
    if not rows:
        raise SystemExit(f"--rows real: no shipped training row has a prompt shorter than --seq {a.seq}")
    return rows


class _Source:
    """Batches of `rows` in a seeded order (the same for every case), padded to the longest row of the batch."""

    def __init__(self, rows: list[dict], batch: int, n_future: int) -> None:
        from wmtp_core.data.collate import MTPCollator
        from wmtp_core.train.sampler import ResumableSampler

        self.rows = rows
        self.sampler = ResumableSampler(len(rows), batch, seed=0)
        self.collate = MTPCollator(pad_id=0, n_future=n_future)
        self.last: dict | None = None

    def next_batch(self) -> dict:
        self.last = self.collate([self.rows[i] for i in self.sampler.next_indices()])
        return self.last


def _reference_forward(ref, batch: dict, chunk: int) -> None:
    """What Rho-1 adds per micro-batch: reference trunk + next-token head + chunked CE, no grad."""
    import torch

    from wmtp_core.losses import linear_ce

    with torch.no_grad():
        hidden = ref.norm(ref.head_hidden(ref.trunk_forward(batch["input_ids"]), 0)).flatten(0, 1)
        linear_ce(hidden, ref.output.weight, batch["labels"][..., 0].flatten(), chunk)


def _build_case(a: argparse.Namespace, case: str, rows: list[dict]):
    """A StageLoop for `case` (its own model copies, same seeds and tokens as every other case) and its source."""
    import torch

    from tests.fixtures.train import CONFIGS
    from wmtp_core.config import load_config
    from wmtp_core.model.value_head import ValueHead
    from wmtp_core.train.loop import LoopSettings, StageLoop
    from wmtp_core.train.stages import Models, WeightedMTPStage, build_strategy

    experiment = case if case in ("verifiable", "rho1") else "baseline"
    cfg = load_config(CONFIGS / "defaults.yaml", CONFIGS / f"recipe.{experiment}.yaml", None,
                      [f"train.batch_size={a.batch}", "train.grad_accum=1", "train.loss_impl=sequential",
                       f"train.chunk_size={a.chunk_size}", f"rho1.chunk_size={a.chunk_size}"])
    models = Models(_model(a, seed=0))
    if case == "verifiable":
        models.value_head = ValueHead(a.dim)
    if case in ("rho1", "baseline_ref"):
        models.reference = _model(a, seed=1).requires_grad_(False).eval()
    source = _Source(rows, a.batch, 1 if case == "ntp" else a.n_future)
    plan = WeightedMTPStage(cfg, models, build_strategy(cfg, models), source, total_steps=10**6)
    if case == "baseline_ref":
        inner = plan.micro_step
        plan.micro_step = lambda batch, denoms: (_reference_forward(models.reference, batch, a.chunk_size),
                                                 inner(batch, denoms))[1]
    settings = LoopSettings(grad_accum=1, checkpoint_every=10**9, keep_checkpoints=1, progress_bar=False,
                            device=torch.device("cpu"), amp_dtype=None, checkpoint_root=Path("/nonexistent"),
                            config_hash="bench")
    return StageLoop(plan, settings, cfg.optim, lambda m, s: None), models, source


def _timed_step(loop) -> float:
    start = time.perf_counter()
    loop.train_step()
    return time.perf_counter() - start


def step_flops(a: argparse.Namespace, batch: dict, blocks: int) -> float:
    """Training FLOPs of one step on `batch` as the code does them (2 per multiply-add, backward = 2 x forward):
    `blocks` transformer blocks over every fed (padded) position with causal attention scores (S(S+1)/2 query-key
    pairs per row: QK^T and PV), plus the vocabulary projection of each head on its labelled rows only."""
    rows, seq = batch["input_ids"].shape
    dense = rows * seq * 2 * (4 * a.dim * a.dim + 3 * a.dim * a.ffn)
    attention = rows * seq * (seq + 1) // 2 * 2 * 2 * a.dim
    labelled = int((batch["labels"] != -100).sum())  # summed over the heads the case trains
    return 3.0 * (blocks * (dense + attention) + labelled * 2 * a.vocab * a.dim)


def sgemm_gflops(n: int = SGEMM_N) -> float:
    """This machine's fp32 matmul rate right now (one n^3 product after a warm one): the ceiling of the round."""
    import torch

    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y
    start = time.perf_counter()
    x @ y
    return 2 * n**3 / (time.perf_counter() - start) / 1e9


def _blocks(a: argparse.Namespace, case: str) -> int:
    return a.trunk_layers + (1 if case == "ntp" else a.n_future)


def interleaved(a: argparse.Namespace, cases: list[str], rows: list[dict]) -> dict:
    """All cases in one process, stepping round-robin, with the matmul rate measured after every round."""
    import torch

    torch.set_num_threads(a.threads)
    built = {c: _build_case(a, c, rows) for c in cases}
    record: dict[str, list[dict]] = {c: [] for c in cases}
    rates = []
    for r in range(a.warmup + a.steps):
        for case, (loop, _, source) in built.items():
            dt = _timed_step(loop)
            batch = source.last
            if r >= a.warmup:
                record[case].append({"s": dt, "padded": batch["input_ids"].numel(),
                                     "real": int(batch["attention_mask"].sum()) if "attention_mask" in batch
                                     else batch["input_ids"].numel(), "flops": step_flops(a, batch, _blocks(a, case))})
            print(json.dumps({"round": r, "case": case, "step_s": round(dt, 4)}), file=sys.stderr, flush=True)
        if r >= a.warmup:
            rates.append(sgemm_gflops())
    return {"cases": record, "sgemm_gflops": rates}


def summarize(a: argparse.Namespace, measured: dict) -> dict:
    record, rates = measured["cases"], measured["sgemm_gflops"]
    cases = {}
    for case, steps in record.items():
        cases[case] = {"step_s": spread([x["s"] for x in steps], 4),
                       "padded_tokens_per_s": spread([x["padded"] / x["s"] for x in steps], 1),
                       "real_tokens_per_s": spread([x["real"] / x["s"] for x in steps], 1),
                       "mflop_per_padded_token": round(statistics.median(x["flops"] / x["padded"] for x in steps) / 1e6, 1),
                       **({"ceiling_fraction": spread([x["flops"] / x["s"] / 1e9 / g for x, g in zip(steps, rates)])}
                          if case in ("ntp", "baseline") else {})}  # value head / reference forward: not modelled
    ratios = {name: spread([x["s"] / y["s"] for x, y in zip(record[num], record[den])])
              for name, (num, den, _) in RATIOS.items() if num in record and den in record}
    return {"cases": cases, "ratios": ratios, "targets": {name: t for name, (_, _, t) in RATIOS.items()},
            "sgemm_gflops": spread(rates, 1)}


def flop_ratio_at_7b_1t_4() -> float:
    """baseline / next-token-only FLOPs at Meta 7B_1T_4 (dim 4096, FFN 11008; 28 trunk + 4 head blocks and 4
    projections vs 28 trunk + head 0 and 1 projection, S 2048, every position labelled): what 1.25 is about."""
    import torch

    a = argparse.Namespace(dim=4096, ffn=11008, vocab=32000)
    ids = torch.zeros(1, 2048, dtype=torch.long)
    mtp = step_flops(a, {"input_ids": ids, "labels": torch.zeros(1, 2048, 4)}, 32)
    ntp = step_flops(a, {"input_ids": ids, "labels": torch.zeros(1, 2048, 1)}, 29)
    return round(mtp / ntp, 3)


def _rss_case(a: argparse.Namespace) -> dict:
    """Fresh process: one warm-up step, then two timed steps; peak RSS of the whole process."""
    import torch

    from wmtp_core.train.allocator import set_mmap_threshold

    torch.set_num_threads(a.threads)
    if a.cpu_mmap_threshold_mb is not None:  # what `wmtp train` does with train.cpu_mmap_threshold_mb
        set_mmap_threshold(a.cpu_mmap_threshold_mb)
    loop, models, _ = _build_case(a, a.case, _rows(a))
    times = [_timed_step(loop) for _ in range(3)]  # the first is a warm-up; RSS peaks grow over the first steps
    return {"step_s": statistics.median(times[1:]),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
            "policy_params": sum(p.numel() for p in models.policy.parameters())}


def alone(a: argparse.Namespace, argv: list[str]) -> dict:
    """The baseline case in fresh processes (each its own peak RSS), default allocator and
    `cpu_mmap_threshold_mb: 1` alternating for `--alone-rounds` rounds."""
    root = Path(__file__).resolve().parents[1]
    variants = {"default_allocator": [], "cpu_mmap_threshold_mb_1": ["--cpu-mmap-threshold-mb", "1"]}
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    for _ in range(a.alone_rounds):
        for name, extra in variants.items():
            done = subprocess.run([sys.executable, __file__, *argv, "--case", "baseline", *extra],
                                  capture_output=True, text=True, cwd=root)
            if done.returncode != 0:
                raise SystemExit(f"baseline RSS case failed:\n{done.stderr[-3000:]}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps({"baseline_alone": name, **runs[name][-1]}), file=sys.stderr, flush=True)
    return {name: {"peak_rss_gb": spread([r["peak_rss_gb"] for r in rs]), "step_s": spread([r["step_s"] for r in rs], 4),
                   "policy_params": rs[0]["policy_params"]} for name, rs in runs.items() if rs}


def _rows(a: argparse.Namespace) -> list[dict]:
    return real_rows(a) if a.rows == "real" else synthetic_rows(a)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    a = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if a.case:
        print(json.dumps(_rss_case(a)))
        return
    if a.steps < 1:
        raise SystemExit("--steps must be >= 1")
    before = load_now()
    baseline_alone = alone(a, argv)  # first: a child's ru_maxrss starts at the parent's RSS at fork time
    rows = _rows(a)
    summary = summarize(a, interleaved(a, a.cases.split(","), rows))
    report = {"shape": {"dim": a.dim, "n_heads": a.n_heads, "trunk_layers": a.trunk_layers, "n_future": a.n_future,
                        "ffn": a.ffn, "vocab": a.vocab, "batch": a.batch, "seq": a.seq, "dtype": "float32",
                        "threads": a.threads, "rounds": a.steps, "warmup": a.warmup, "rows": a.rows,
                        "n_rows": len(rows)},
              **summary, "baseline_over_ntp_flop_ratio_at_7b_1t_4": flop_ratio_at_7b_1t_4(),
              "baseline_alone": baseline_alone}
    report["machine"] = load_report(before, load_now())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
