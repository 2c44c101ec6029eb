"""The memory plan's arithmetic on a tiny shape whose counts are computed by hand here."""

from __future__ import annotations

import pytest

from vendor.meta_llama.model import ModelArgs
from wmtp_core.plan.advice import parse_memory, usable_bytes, verdict
from wmtp_core.plan.counts import count_params
from wmtp_core.plan.memory import GIB, PlanInputs, plan_memory

# dim 8, 2 heads, FFN int(2*32/3)=21 -> rounded up to a multiple of 4 = 24; 3 blocks: 1 trunk + 2 heads
TINY = ModelArgs(dim=8, n_layers=3, n_heads=2, vocab_size=10, multiple_of=4, n_future_tokens=2)
BLOCK = 4 * 8 * 8 + 3 * 8 * 24 + 2 * 8  # wq wk wv wo, w1 w2 w3, two norms = 848
TOTAL = 10 * 8 + 3 * BLOCK + 8 + 10 * 8  # embedding, blocks, final norm, output = 2712
LORA_RANK2 = 3 * (4 * 2 * (8 + 8) + 3 * 2 * (8 + 24))  # rank * (in + out) per projection, 3 blocks = 960
ACT_PER_TOKEN_FP32 = (9 * 8 + 2 * 8 + 4 * 24) * 4  # 736 bytes per token and block


def test_counts_by_hand() -> None:
    c = count_params(TINY)
    assert (c.block, c.total, c.trainable, c.trunk_blocks, c.head_blocks) == (BLOCK, TOTAL, TOTAL, 1, 2)
    assert count_params(TINY, "heads").trainable == 2 * BLOCK
    assert count_params(TINY, "heads", heads_trunk_blocks=1).trainable == 3 * BLOCK
    lora = count_params(TINY, "lora", lora_rank=2)
    assert (lora.lora, lora.trainable, lora.total) == (LORA_RANK2, LORA_RANK2, TOTAL + LORA_RANK2)
    with pytest.raises(ValueError, match="heads_trunk_blocks"):
        count_params(TINY, "heads", heads_trunk_blocks=2)


def test_full_fp32_one_gpu_by_hand() -> None:
    p = plan_memory(PlanInputs(TINY, batch=1, seq=4, chunk=2, bf16=False))
    assert p.parts["weights"] == TOTAL * 4
    assert p.parts["gradients"] == TOTAL * 4
    assert p.parts["optimizer"] == TOTAL * 8
    assert p.activations_no_ac == 1 * 4 * ACT_PER_TOKEN_FP32  # one trunk block, 4 tokens
    assert p.activations_ac == 1 * 4 * 8 * 4 + 4 * ACT_PER_TOKEN_FP32  # fp32 block input + one recompute
    assert "autocast_weight_cache" not in p.parts and "gathered_params" not in p.parts
    # head phase: trunk out + grad (2*T*D*4), one head block, 4*T*D*4 hidden buffers, (V, D) fp32 grad, (2, V) fp32 logits
    head = 2 * 4 * 8 * 4 + 4 * ACT_PER_TOKEN_FP32 + 4 * 4 * 8 * 4 + 10 * 8 * 4 + 2 * 10 * 4
    assert p.parts["loss_and_heads"] == head
    compute = p.activations_no_ac + head + (2 * BLOCK + 8 + 80) * 4  # head blocks + norm + output grads
    assert p.peak == TOTAL * 4 + TOTAL * 8 + max(compute, TOTAL * 4)
    assert p.first_step_growth == max(compute, TOTAL * 12)


def test_sharding_offload_and_reference() -> None:
    two = plan_memory(PlanInputs(TINY, batch=1, seq=4, bf16=False, gpus=2))
    assert two.parts["weights"] == TOTAL * 4 // 2 and two.parts["optimizer"] == TOTAL * 8 // 2
    assert two.parts["gathered_params"] == (80 + 88 + 2 * BLOCK) * 4 + BLOCK * 8
    off = plan_memory(PlanInputs(TINY, batch=1, seq=4, bf16=False, cpu_offload=True))
    assert off.parts["weights"] == off.parts["gradients"] == off.parts["optimizer"] == 0
    assert off.host == TOTAL * 16
    ref = plan_memory(PlanInputs(TINY, batch=1, seq=4, bf16=False, reference=TINY))
    assert ref.parts["reference"] == TOTAL * 4
    bf = plan_memory(PlanInputs(TINY, batch=1, seq=4))  # 1 GPU bf16: autocast caches trainable matmul weights
    assert bf.parts["autocast_weight_cache"] == (TOTAL - 80) * 2


def test_seven_b_full_needs_more_than_one_a100() -> None:
    seven = ModelArgs(n_future_tokens=4)
    v = verdict(PlanInputs(seven, batch=1, seq=2048, activation_checkpointing=True), 80)
    assert not v.fits and v.plan.peak > 16 * 6.7e9  # >= 16 bytes per parameter
    names = [name for name, _ in v.options]
    assert any(n.startswith("model.finetune=lora") for n in names)
    assert all(p.peak <= v.usable for _, p in v.options)
    assert verdict(PlanInputs(seven, batch=1, seq=2048, activation_checkpointing=True, gpus=4), 80).fits


def test_memory_parsing() -> None:
    assert parse_memory("80GB") == parse_memory("80GiB") == parse_memory("80") == 80.0
    assert usable_bytes(80) == int(80 * GIB * 0.95 - GIB)
    with pytest.raises(ValueError, match="size like"):
        parse_memory("lots")


def test_lora_activations_by_hand() -> None:
    """LoRA: frozen norm gains keep no normed copy (2 D fewer per block); each adapter keeps its rank-r input."""
    p = plan_memory(PlanInputs(TINY, batch=1, seq=4, chunk=2, bf16=False, finetune="lora", lora_rank=2))
    per_token = (7 * 8 + 2 * 8 + 4 * 24) * 4 + 2 * 7 * 4
    assert p.activations_no_ac == 4 * per_token
    assert p.parts["gradients"] == LORA_RANK2 * 4 and p.parts["optimizer"] == LORA_RANK2 * 8
    assert p.parts["weights"] == (TOTAL + LORA_RANK2) * 4
