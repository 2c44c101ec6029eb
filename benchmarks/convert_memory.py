"""Peak RSS of `convert_meta_checkpoint` relative to the checkpoint size (target <= 0.5), next to a naive load.

Writes a ~1.9 GB (>= 1 GB) synthetic bf16 Meta-format checkpoint into a temp dir, then converts it in child processes:
  streaming: wmtp_core.artifacts.convert (mmap, tensor-by-tensor fp16 safetensors, sharded)
  naive:     torch.load without mmap -> whole fp16 state dict -> safetensors save_file
Each child reports its own peak RSS (VmHWM) and its RSS right after imports (torch alone is ~0.6 GB). The two modes
alternate (streaming first in even rounds, naive first in odd ones) for `--rounds` rounds; every figure is the median
and range over rounds, with the machine's load before and after. Prints one JSON object.
Temp files are removed at the end.   Usage: uv run python benchmarks/convert_memory.py [--dim 2048 --layers 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rounds import in_turn, load_now, load_report, spread  # noqa: E402

CHILD = r"""
import json, sys, time
import psutil, torch
from safetensors.torch import save_file
from wmtp_core.artifacts.convert import convert_meta_checkpoint
mode, src, out, shard = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
baseline = psutil.Process().memory_info().rss
start = time.perf_counter()
if mode == "streaming":
    convert_meta_checkpoint(src, out, max_shard_bytes=shard)
else:
    state = torch.load(src + "/consolidated.pth", map_location="cpu", weights_only=True)
    half = {k: v.to(torch.float16).contiguous() for k, v in state.items()}
    import os; os.makedirs(out, exist_ok=True)
    save_file(half, out + "/model.safetensors")
# VmHWM: this process image's peak RSS. (ru_maxrss would also count the parent's RSS inherited at fork/exec.)
status = open("/proc/self/status").read().split("\n")
peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"baseline_rss_bytes": baseline, "peak_rss_bytes": peak,
                  "seconds": round(time.perf_counter() - start, 2)}))
"""


def make_checkpoint(work: Path, dim: int, layers: int) -> Path:
    from vendor.meta_llama.model import ModelArgs
    from wmtp_core import paths
    from wmtp_core.artifacts.synthetic import write_synthetic_meta_checkpoint

    args = ModelArgs(dim=dim, n_layers=layers, n_heads=dim // 128, vocab_size=32000, multiple_of=256,
                     n_future_tokens=4)
    return write_synthetic_meta_checkpoint(work / "src", args, paths.MISTRAL_TOKENIZER, seed=0)


def run_child(mode: str, src: Path, out: Path, shard_bytes: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out), str(shard_bytes)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(src: Path, work: Path, shard: int, rounds: int) -> dict[str, list[dict]]:
    """Each mode's child result per round, the modes alternating which goes first."""
    results: dict[str, list[dict]] = {"streaming": [], "naive": []}
    for i in range(rounds):
        for mode in in_turn(i, ("streaming", "naive")):
            results[mode].append(run_child(mode, src, work / f"{mode}-{i}", shard))
            shutil.rmtree(work / f"{mode}-{i}", ignore_errors=True)
    return results


def summarize(results: dict[str, list[dict]], ckpt: int) -> dict:
    report: dict = {}
    for mode, runs in results.items():
        report[mode] = {"peak_rss_gb": spread([r["peak_rss_bytes"] / 1e9 for r in runs]),
                        "peak_rss_ratio": spread([r["peak_rss_bytes"] / ckpt for r in runs]),
                        "peak_above_baseline_ratio": spread([(r["peak_rss_bytes"] - r["baseline_rss_bytes"]) / ckpt
                                                             for r in runs]),
                        "seconds": spread([r["seconds"] for r in runs], 2)}
    report["streaming_vs_naive_peak"] = spread([s["peak_rss_bytes"] / n["peak_rss_bytes"]
                                                for s, n in zip(results["streaming"], results["naive"])])
    report["meets_target"] = max(r["peak_rss_bytes"] for r in results["streaming"]) / ckpt <= 0.5
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)  # ~1.9 GB bf16
    parser.add_argument("--max-shard-mb", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    if opts.rounds < 1:
        parser.error("--rounds must be >= 1")
    work = Path(tempfile.mkdtemp(prefix="wmtp-convert-bench-"))
    try:
        t0 = time.perf_counter()
        src = make_checkpoint(work, opts.dim, opts.layers)
        ckpt = (src / "consolidated.pth").stat().st_size
        gen_s = round(time.perf_counter() - t0, 1)
        shard = opts.max_shard_mb * 1024**2
        before = load_now()
        results = measure(src, work, shard, opts.rounds)
        machine = load_report(before, load_now())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"checkpoint_bytes": ckpt, "checkpoint_dtype": "bfloat16", "output_dtype": "float16",
              "dims": {"dim": opts.dim, "n_layers": opts.layers, "vocab_size": 32000, "n_future_tokens": 4},
              "max_shard_bytes": shard, "generate_seconds": gen_s, "target_peak_rss_ratio": 0.5,
              **summarize(results, ckpt), "machine": machine}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
