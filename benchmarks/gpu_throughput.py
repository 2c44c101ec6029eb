"""Training throughput and MFU of a ~1B-parameter multi-token-prediction model in bf16 (CUDA only).

    uv run python benchmarks/gpu_throughput.py                       # 1 GPU: autocast bf16, fp32 master weights
    torchrun --nproc-per-node=4 benchmarks/gpu_throughput.py         # FSDP2, bf16 params / fp32 reduction
    uv run python benchmarks/gpu_throughput.py --peak-tflops 500     # a card missing from the table

Without CUDA it prints {"status": "unavailable", "reason": ...} and exits 2. `--device cpu` runs the same code
path (tiny sizes only; used by the tests) and reports MFU only when --peak-tflops is given.

One optimizer step = forward + weighted MTP loss (wmtp_core.losses, global token denominator) + backward + AdamW.
Measured side by side in one run: full fine-tuning and LoRA (peft adapters on every projection, base frozen:
`model.finetune: lora`), each with the sequential and the naive loss. For every case the peak allocated CUDA memory
is compared with the memory plan's prediction for the same shape (wmtp_core.plan, `measured_over_predicted`).
MFU = 6 * N * tokens_per_s / peak_flops with N = all parameters (the usual definition, `mfu`); `mfu_mtp` uses the
matmul parameters one token actually goes through in MTP training (trunk once, every head block and the output
projection once per head, no embedding lookup). Attention-score FLOPs are left out of both.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import torch

from vendor.meta_llama.model import ModelArgs, Transformer, expected_shapes

# Dense bf16 tensor-core peak per GPU (FLOP/s), from NVIDIA's data sheets (no sparsity).
PEAK_BF16_FLOPS = (
    ("H200", 989.4e12),
    ("H100 NVL", 835.0e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),  # SXM
    ("A100", 312.0e12),
)


def peak_flops_for(device_name: str) -> float | None:
    """Peak bf16 FLOP/s of a card by its CUDA device name (first matching entry), or None when unknown."""
    for key, flops in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return flops
    return None


def model_args(ns: argparse.Namespace) -> ModelArgs:
    return ModelArgs(dim=ns.dim, n_layers=ns.n_layers, n_heads=ns.n_heads, n_kv_heads=ns.n_kv_heads,
                     vocab_size=ns.vocab, multiple_of=ns.multiple_of, n_future_tokens=ns.n_future,
                     max_seq_len=ns.seq_len)


def param_counts(args: ModelArgs) -> dict[str, int]:
    """total: every parameter; mtp_matmul: per-token matmul parameters of MTP training (see module docstring)."""
    sizes = {key: math.prod(shape) for key, shape in expected_shapes(args).items()}
    head0 = f"layers.{args.n_trunk_layers}."
    trunk = sum(n for k, n in sizes.items() if k.startswith("layers.") and not k.startswith(head0))
    per_head = sum(n for k, n in sizes.items() if k.startswith(head0)) + sizes["norm.weight"] + sizes["output.weight"]
    return {"total": sum(sizes.values()), "mtp_matmul": trunk + args.n_future_tokens * per_head}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--n-layers", type=int, default=16, help="Meta's n_layers: trunk + head 0")
    p.add_argument("--n-heads", type=int, default=16)
    p.add_argument("--n-kv-heads", type=int, default=16)
    p.add_argument("--n-future", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--multiple-of", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=4, help="sequences per rank per step")
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per loss implementation")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--loss-impls", nargs="+", default=["sequential", "naive"], choices=["sequential", "naive"])
    p.add_argument("--finetunes", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the per-GPU peak (TFLOP/s)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    return p.parse_args(argv)


def random_batch(args: ModelArgs, batch: int, seq: int, device: torch.device) -> dict[str, torch.Tensor]:
    tokens = torch.randint(3, args.vocab_size, (batch, seq + args.n_future_tokens), device=device)
    labels = torch.stack([tokens[:, k + 1: k + 1 + seq] for k in range(args.n_future_tokens)], dim=-1)
    weights = 0.5 + torch.rand(batch, seq, device=device)
    return {"input_ids": tokens[:, :seq], "labels": labels, "weights": weights}  # labels (B, S, F)


def model_config(ns: argparse.Namespace) -> Any:
    from wmtp_core.config import LoraConfig, ModelConfig

    return ModelConfig(finetune=ns.finetune, lora=LoraConfig(rank=ns.lora_rank),
                       activation_checkpointing=ns.activation_checkpointing)


def build(ns: argparse.Namespace, device: torch.device) -> tuple[Transformer, torch.optim.Optimizer]:
    from wmtp_core.config import OptimConfig
    from wmtp_core.distributed import shard_model
    from wmtp_core.model.finetune import apply_finetune, set_trainable
    from wmtp_core.train.loop import build_optimizer

    torch.manual_seed(0)
    with torch.device(device):
        model = Transformer(model_args(ns))
    mcfg = model_config(ns)
    apply_finetune(model, mcfg)  # LoRA: peft adapters, base frozen
    model.checkpoint_trunk = ns.activation_checkpointing
    model = shard_model(model, device, mixed_precision=ns.precision == "bf16")
    return model, build_optimizer([(set_trainable(model, mcfg), 1e-5)], OptimConfig())


def predicted_peak(ns: argparse.Namespace, world: int) -> int:
    """The memory plan's per-GPU peak for this case (wmtp_core.plan.memory)."""
    from wmtp_core.plan.memory import PlanInputs, plan_memory

    inputs = PlanInputs(model_args(ns), batch=ns.batch_size, seq=ns.seq_len, chunk=ns.chunk_size,
                        finetune=ns.finetune, lora_rank=ns.lora_rank,
                        activation_checkpointing=ns.activation_checkpointing, bf16=ns.precision == "bf16",
                        gpus=world)
    return plan_memory(inputs).peak


def train_step(model: Transformer, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               ns: argparse.Namespace, device: torch.device) -> float:
    from wmtp_core.distributed import all_reduce_sum, global_token_count
    from wmtp_core.losses import count_valid_labels, weighted_mtp_loss

    denom = global_token_count(count_valid_labels(batch["labels"]))
    dtype = torch.bfloat16 if ns.precision == "bf16" else None
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        trunk = model.trunk_forward(batch["input_ids"])
        out = weighted_mtp_loss(model, trunk, batch["labels"], batch["weights"], float(denom),
                                impl=ns.loss_impl, chunk_size=ns.chunk_size)
        out.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(all_reduce_sum(out.loss.detach()))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(ns: argparse.Namespace, device: torch.device, peak_per_rank: float | None) -> dict[str, Any]:
    from wmtp_core.distributed import get_world_size

    model, optimizer = build(ns, device)
    counts = param_counts(model.args)
    batch = random_batch(model.args, ns.batch_size, ns.seq_len, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(ns.warmup):
        train_step(model, optimizer, batch, ns, device)
    sync(device)
    start = time.perf_counter()
    losses = [train_step(model, optimizer, batch, ns, device) for _ in range(ns.steps)]
    sync(device)
    seconds = time.perf_counter() - start
    world = get_world_size()
    tokens_per_s = ns.batch_size * ns.seq_len * world * ns.steps / seconds
    peak = peak_per_rank * world if peak_per_rank else None
    measured = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    predicted = predicted_peak(ns, world)
    result = {
        "finetune": ns.finetune, "loss_impl": ns.loss_impl, "step_time_s": seconds / ns.steps,
        "tokens_per_s": tokens_per_s, "params_trainable": sum(p.numel() for g in optimizer.param_groups
                                                              for p in g["params"]),
        "tokens_per_s_per_gpu": tokens_per_s / world, "params_total": counts["total"],
        "params_mtp_matmul": counts["mtp_matmul"], "last_loss": losses[-1],
        "mfu": 6 * counts["total"] * tokens_per_s / peak if peak else None,
        "mfu_mtp": 6 * counts["mtp_matmul"] * tokens_per_s / peak if peak else None,
        "peak_memory_gib": measured / 2**30 if measured is not None else None,
        "predicted_peak_gib": predicted / 2**30,  # the plan counts only what this case holds (no reference)
        "measured_over_predicted": measured / predicted if measured is not None else None,
    }
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def unavailable(reason: str) -> dict[str, Any]:
    return {"benchmark": "gpu_throughput", "status": "unavailable", "reason": reason}


def run(ns: argparse.Namespace) -> dict[str, Any]:
    from wmtp_core.distributed import destroy_distributed, get_world_size, init_distributed

    if ns.device == "cuda" and not torch.cuda.is_available():
        return unavailable("CUDA is not available (torch.cuda.is_available() is False); this benchmark needs a "
                           "GPU (or --device cpu for a tiny functional run)")
    _, device = init_distributed(ns.device)
    try:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        table = peak_flops_for(name) if device.type == "cuda" else None
        peak = ns.peak_tflops * 1e12 if ns.peak_tflops else table
        cases = {}
        for finetune in ns.finetunes:
            for impl in ns.loss_impls:
                ns.finetune, ns.loss_impl = finetune, impl
                cases[f"{finetune}/{impl}"] = measure(ns, device, peak)
        out = {"benchmark": "gpu_throughput", "status": "ok", "device": name, "world_size": get_world_size(),
               "peak_flops_per_gpu": peak, "precision": ns.precision,
               "peak_flops_source": "flag" if ns.peak_tflops else ("table" if peak else "unknown card: pass "
                                                                                     "--peak-tflops"),
               "config": {k: v for k, v in vars(ns).items() if k not in ("loss_impl", "finetune")},
               "cases": cases, "ratios": ratios(cases)}
        return out
    finally:
        destroy_distributed()


def ratios(cases: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Side-by-side ratios between the cases measured (sequential vs naive loss, LoRA vs full)."""
    out: dict[str, float] = {}
    pairs = {f"{ft}_tokens_per_s_sequential_over_naive": (f"{ft}/sequential", f"{ft}/naive") for ft in ("full", "lora")}
    pairs.update({f"lora_over_full_tokens_per_s_{impl}": (f"lora/{impl}", f"full/{impl}")
                  for impl in ("sequential", "naive")})
    for name, (a, b) in pairs.items():
        if a in cases and b in cases:
            out[name] = cases[a]["tokens_per_s"] / cases[b]["tokens_per_s"]
            if cases[a]["peak_memory_gib"] is not None:
                out[name.replace("tokens_per_s", "peak_memory")] = (cases[a]["peak_memory_gib"]
                                                                    / cases[b]["peak_memory_gib"])
    return out


def main(argv: list[str] | None = None) -> int:
    from wmtp_core.distributed import detect_env

    result = run(parse_args(argv))
    if detect_env().rank == 0:  # one JSON document, from rank 0
        print(json.dumps(result, indent=2))
    return 0 if result["status"] == "ok" else 2


if __name__ == "__main__":
    sys.exit(main())
