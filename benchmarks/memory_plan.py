"""The memory plan (wmtp_core/plan) against measurement: peak RSS growth of one training step on this CPU.

For each micro shape and each optimizer setup (full fine-tune, LoRA through peft) a fresh subprocess builds the
model in fp32, runs one warm-up step on a tiny copy of the setup (library initialisation), then measures the
first training step of the real model: trunk forward, sequential chunked MTP loss (wmtp_core.losses),
backward, gradient clipping and the project's AdamW (fused on CPU, state created in this step). Measured: peak
RSS during the step (VmHWM, reset through /proc/self/clear_refs, plus ru_maxrss) minus RSS just before it, with
glibc's mmap threshold fixed at 64 KiB so freed tensors leave the RSS. Predicted: `first_step_growth` of the
plan for the same inputs (fp32, 1 device). Prints JSON with the ratio predicted / measured per case.

    flock /work/heavy.lock uv run python benchmarks/memory_plan.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# (name, ModelArgs fields, batch, seq, chunk)
SHAPES = {
    "d256_L8_F4": ({"dim": 256, "n_layers": 8, "n_heads": 4, "vocab_size": 32000, "n_future_tokens": 4}, 2, 1024, 512),
    "d512_L6_F2": ({"dim": 512, "n_layers": 6, "n_heads": 8, "vocab_size": 8000, "n_future_tokens": 2}, 4, 512, 256),
    "d384_L10_F4": ({"dim": 384, "n_layers": 10, "n_heads": 6, "vocab_size": 16000, "n_future_tokens": 4}, 1, 2048,
                    1024),
}
SETUPS = ("full", "lora")
TOLERANCE = 0.15


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _setup(fields: dict, finetune: str, batch: int, seq: int):
    import torch

    from vendor.meta_llama.model import ModelArgs, Transformer
    from wmtp_core.config import ModelConfig, OptimConfig
    from wmtp_core.model.finetune import apply_finetune, set_trainable
    from wmtp_core.train.loop import build_optimizer

    args = ModelArgs(multiple_of=64, max_seq_len=seq, **fields)
    model = Transformer(args)
    mcfg = ModelConfig(finetune=finetune)
    apply_finetune(model, mcfg)
    params = set_trainable(model, mcfg)
    optimizer = build_optimizer([(params, 1e-4)], OptimConfig())
    n = args.n_future_tokens
    tokens = torch.randint(3, args.vocab_size, (batch, seq + n))
    labels = torch.stack([tokens[:, k + 1: k + 1 + seq] for k in range(n)], dim=-1)
    return args, model, params, optimizer, tokens[:, :seq], labels


def _step(model, params, optimizer, tokens, labels, chunk: int) -> None:
    import torch

    from wmtp_core.losses import count_valid_labels, weighted_mtp_loss

    optimizer.zero_grad(set_to_none=True)
    trunk = model.trunk_forward(tokens)
    out = weighted_mtp_loss(model, trunk, labels, torch.ones(tokens.shape), count_valid_labels(labels),
                            impl="sequential", chunk_size=chunk)
    out.backward()
    del trunk, out
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()


def run_case(shape: str, finetune: str) -> dict[str, float]:
    import gc

    import torch

    from wmtp_core.plan.memory import PlanInputs, plan_memory

    torch.set_num_threads(1)
    fields, batch, seq, chunk = SHAPES[shape]
    tiny = {**fields, "dim": 64, "n_heads": 2, "vocab_size": 256}
    _step(*_setup(tiny, finetune, 1, 16)[1:], chunk=8)  # warm-up: kernels, peft, optimizer code paths
    args, model, params, optimizer, tokens, labels = _setup(fields, finetune, batch, seq)
    gc.collect()
    before = _rss()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    _step(model, params, optimizer, tokens, labels, chunk)
    measured = _hwm() - before
    plan = plan_memory(PlanInputs(args, batch=batch, seq=seq, chunk=chunk, finetune=finetune, bf16=False))
    return {"measured_bytes": measured, "predicted_bytes": plan.first_step_growth,
            "params": plan.counts.total, "trainable": plan.counts.trainable}


def main() -> int:
    if len(sys.argv) == 3:
        print(json.dumps(run_case(sys.argv[1], sys.argv[2])))
        return 0
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    cases = {}
    for shape in SHAPES:
        for setup in SETUPS:  # interleaved: each shape's two setups back to back
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), shape, setup],
                                  capture_output=True, text=True, check=False, env=env)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                raise SystemExit(f"case {shape}/{setup} failed with exit code {proc.returncode}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["ratio_predicted_over_measured"] = round(r["predicted_bytes"] / r["measured_bytes"], 3)
            r["measured_mib"] = round(r["measured_bytes"] / 2**20, 1)
            r["predicted_mib"] = round(r["predicted_bytes"] / 2**20, 1)
            cases[f"{shape}/{setup}"] = r
    ratios = [c["ratio_predicted_over_measured"] for c in cases.values()]
    report = {"measure": "CPU fp32: peak RSS growth of the first training step (VmHWM reset), fresh process",
              "tolerance": TOLERANCE, "cases": cases,
              "all_within_tolerance": all(abs(r - 1) <= TOLERANCE for r in ratios),
              "worst_ratio": max(ratios, key=lambda r: abs(r - 1))}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
