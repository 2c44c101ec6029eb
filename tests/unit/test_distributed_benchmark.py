"""benchmarks/gpu_throughput.py: peak-FLOPs lookup, parameter accounting, the skip path and a tiny CPU run."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from wmtp_core import paths

_SPEC = importlib.util.spec_from_file_location("gpu_throughput", paths.REPO_ROOT / "benchmarks" / "gpu_throughput.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)

TINY = ["--dim", "32", "--n-layers", "3", "--n-heads", "4", "--n-kv-heads", "2", "--n-future", "2", "--vocab", "64",
        "--multiple-of", "16", "--seq-len", "12", "--batch-size", "2", "--steps", "1", "--warmup", "0"]


@pytest.mark.parametrize(("name", "tflops"), [
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", 835.0), ("NVIDIA H200", 989.4),
])
def test_peak_flops_by_device_name(name, tflops):
    assert bench.peak_flops_for(name) == pytest.approx(tflops * 1e12)


def test_unknown_card_has_no_peak():
    assert bench.peak_flops_for("Tesla V100-SXM2-16GB") is None


def test_default_model_is_about_one_billion_parameters():
    counts = bench.param_counts(bench.model_args(bench.parse_args([])))
    assert 0.9e9 < counts["total"] < 1.2e9


def test_mtp_matmul_count_charges_each_head_and_the_output_once_per_head():
    model = bench.Transformer(bench.model_args(bench.parse_args(TINY)))
    block = sum(p.numel() for p in model.layers[0].parameters())
    out = model.output.weight.numel() + model.norm.weight.numel()
    n_trunk, n_future = len(model.layers) - 1, model.n_future
    counts = bench.param_counts(model.args)
    assert counts["mtp_matmul"] == n_trunk * block + n_future * (block + out)
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_without_cuda_it_fails_clearly(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main([]) == 2
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "unavailable" and "CUDA is not available" in record["reason"]


def test_tiny_cpu_run_reports_both_loss_impls_side_by_side():
    argv = [*TINY, "--device", "cpu", "--precision", "fp32", "--peak-tflops", "2", "--finetunes", "full"]
    result = bench.run(bench.parse_args(argv))
    assert result["status"] == "ok" and set(result["cases"]) == {"full/sequential", "full/naive"}
    seq, naive = result["cases"]["full/sequential"], result["cases"]["full/naive"]
    assert seq["last_loss"] == pytest.approx(naive["last_loss"], rel=1e-5)  # same model, data and loss value
    assert math.isfinite(seq["tokens_per_s"]) and seq["tokens_per_s"] > 0
    expected_mfu = 6 * seq["params_total"] * seq["tokens_per_s"] / 2e12
    assert seq["mfu"] == pytest.approx(expected_mfu)
    assert result["ratios"]["full_tokens_per_s_sequential_over_naive"] == pytest.approx(
        seq["tokens_per_s"] / naive["tokens_per_s"])


def _bench_on_rank(argv: list[str]) -> dict:
    return bench.run(bench.parse_args(argv))


def test_two_rank_cpu_run_shards_the_model_and_counts_global_tokens():
    from fixtures.distributed import run_ranks

    argv = [*TINY, "--device", "cpu", "--precision", "fp32", "--loss-impls", "sequential", "--finetunes", "full"]
    one = _bench_on_rank(argv)
    two = run_ranks(_bench_on_rank, 2, argv)
    assert [r["world_size"] for r in two] == [2, 2] and one["world_size"] == 1
    case = two[0]["cases"]["full/sequential"]
    assert case["tokens_per_s"] == pytest.approx(2 * case["tokens_per_s_per_gpu"])
    assert case["params_total"] == one["cases"]["full/sequential"]["params_total"]
    assert math.isfinite(case["last_loss"]) and case["mfu"] is None  # cpu: no peak FLOP/s unless given


@pytest.mark.slow  # imports peft
def test_tiny_cpu_run_compares_lora_with_full_and_the_plan():
    from wmtp_core.plan.memory import PlanInputs, plan_memory

    argv = [*TINY, "--device", "cpu", "--precision", "fp32", "--loss-impls", "sequential", "--lora-rank", "2"]
    ns = bench.parse_args(argv)
    result = bench.run(ns)
    full, lora = result["cases"]["full/sequential"], result["cases"]["lora/sequential"]
    args = bench.model_args(ns)
    block_lora = 4 * 2 * (32 + 32) + 3 * 2 * (32 + args.ffn_hidden_dim)  # n_kv_heads 2: wk, wv are 32 -> 16
    block_lora -= 2 * 2 * 16
    assert lora["params_trainable"] == 3 * block_lora and full["params_trainable"] == full["params_total"]
    expected = plan_memory(PlanInputs(args, batch=2, seq=12, chunk=1024, finetune="lora", lora_rank=2,
                                      bf16=False)).peak
    assert lora["predicted_peak_gib"] == pytest.approx(expected / 2**30)
    assert lora["peak_memory_gib"] is None and lora["measured_over_predicted"] is None  # no CUDA peak on cpu
    assert result["ratios"]["lora_over_full_tokens_per_s_sequential"] == pytest.approx(
        lora["tokens_per_s"] / full["tokens_per_s"])
