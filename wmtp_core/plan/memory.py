"""Predicted peak memory per GPU of one Stage 2 training step (the largest stage), split by what holds it.

Pure arithmetic on parameter counts (`counts.py`, exact from a meta-device model) and the code's saved tensors:

* weights: fp32 master weights of the policy (LoRA: frozen base + adapters), divided over the FSDP2 ranks;
  the Rho-1 reference (fp32, frozen, replicated on every rank) and the value head (fp32, replicated).
* gradients: fp32, trainable parameters only, sharded like the weights.
* optimizer: AdamW exp_avg + exp_avg_sq, fp32, trainable only, sharded. Allocated at the first `step()`.
* activations: what autograd keeps per token and trunk block (`block_activation_bytes`, counted tensor by tensor
  from vendor/meta_llama/model.py), times the trunk blocks that need gradients; with activation checkpointing
  only each block's fp32 input plus one recomputed block. Then the sequential chunked loss's head phase: one
  head block's activations, the fused CE's (R, D) and (V, D) gradient buffers and one (chunk, V) logits block.
* transient parameter copies: bf16 autocast's per-step weight cache (1 GPU, trainable matmul weights), or
  FSDP2's gathered root (embedding, norm, output) plus two gathered blocks.
* CPU offload (FSDP2 CPUOffloadPolicy): weights, gradients and optimizer state live in host memory instead.

Peak = resident (weights, reference, value head, optimizer) + max(forward/head phase, all gradients), where
the forward phase holds the trunk activations, the head-phase transient and the head gradients. `first_step`
adds the optimizer state to the gradient phase instead (it is allocated inside the first step).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from vendor.meta_llama.model import ModelArgs
from wmtp_core.plan.counts import LINEAR_NAMES, ParamCounts, count_params

GIB = 1024**3
FP32 = 4


@dataclass(frozen=True)
class PlanInputs:
    args: ModelArgs
    batch: int
    seq: int
    chunk: int = 1024
    finetune: str = "full"
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = LINEAR_NAMES
    heads_trunk_blocks: int = 0
    activation_checkpointing: bool = False
    bf16: bool = True  # CUDA autocast bf16 (FSDP2: bf16 params, fp32 reduction); False: fp32 compute (CPU)
    gpus: int = 1
    cpu_offload: bool = False
    reference: ModelArgs | None = None  # Rho-1 reference model
    value_head: bool = False  # verifiable: value head (fp32, replicated)
    value_hidden: int | None = None


@dataclass
class MemoryPlan:
    inputs: PlanInputs
    counts: ParamCounts
    parts: dict[str, int]  # bytes per GPU by component
    activations_no_ac: int
    activations_ac: int
    peak: int  # steady-state step peak per GPU (bytes)
    first_step_growth: int  # first step: peak minus what was resident before it (optimizer state created in it)
    host: int  # host memory per GPU for CPU offload (0 without)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        i = self.inputs
        return {"gpus": i.gpus, "finetune": i.finetune, "activation_checkpointing": i.activation_checkpointing,
                "cpu_offload": i.cpu_offload, "batch": i.batch, "seq": i.seq, "bf16": i.bf16,
                "params": {"total": self.counts.total, "trainable": self.counts.trainable, "lora": self.counts.lora},
                "per_gpu_bytes": dict(self.parts), "peak_bytes": self.peak, "peak_gib": round(self.peak / GIB, 2),
                "activations_bytes": {"no_checkpointing": self.activations_no_ac,
                                      "checkpointing": self.activations_ac},
                "host_bytes": self.host, "first_step_growth_bytes": self.first_step_growth}


def block_activation_bytes(args: ModelArgs, bf16: bool, norms_trainable: bool = True) -> int:
    """Bytes autograd saves per token in one TransformerBlock forward.

    fp32: block input, norm1 (normed, scaled), q and k after RoPE, v, SDPA output and its (B, S, D) copy, the
    residual h, norm2 (normed, scaled) — 9 D + 2 Dkv — and the SwiGLU w1, silu, w3, product — 4 F — in 4 bytes.
    A frozen norm gain (LoRA) needs no copy of its normed input: 2 D fewer.
    bf16 autocast: the residual stream and norms stay fp32 (6 D * 4); every projection input is cast anew
    (3 for wq/wk/wv, 2 for w1/w3), plus q, k, v, SDPA output and copy, and 4 F, in 2 bytes.
    """
    d, dkv, f = args.dim, args.kv_heads * args.head_dim, args.ffn_hidden_dim
    norm_d = 0 if norms_trainable else 2 * d
    if not bf16:
        return (9 * d - norm_d + 2 * dkv + 4 * f) * FP32
    return (6 * d - norm_d) * FP32 + (8 * d + 2 * dkv + 4 * f) * 2


def _per_block(i: PlanInputs) -> int:
    """Activation bytes per token of a block that needs gradients, for this fine-tuning mode."""
    lora = i.finetune == "lora"
    extra = i.lora_rank * len(i.lora_targets) * (2 if i.bf16 else FP32) if lora else 0  # lora_A outputs
    return block_activation_bytes(i.args, i.bf16, norms_trainable=not lora) + extra


def _grad_trunk_blocks(i: PlanInputs, c: ParamCounts) -> int:
    """Trunk blocks whose forward keeps activations (their parameters or adapters need gradients)."""
    if i.finetune == "heads":
        return i.heads_trunk_blocks
    return c.trunk_blocks


def trunk_activations(i: PlanInputs, c: ParamCounts, checkpointing: bool) -> int:
    tokens = i.batch * i.seq
    per_block = _per_block(i)
    n = _grad_trunk_blocks(i, c)
    if n == 0:
        return 0
    if checkpointing:  # each block keeps its fp32 input; backward recomputes one block at a time
        return n * tokens * i.args.dim * FP32 + tokens * per_block
    return n * tokens * per_block


def head_phase_bytes(i: PlanInputs) -> int:
    """Sequential loss, one head at a time: the trunk output and its gradient, one head block's activations,
    the normed/selected hidden rows, and the fused CE's gradient buffers plus one (chunk, V) logits block
    (fp32 in place; under bf16 also its bf16 matmul output / gradient)."""
    tokens, d, v = i.batch * i.seq, i.args.dim, i.args.vocab_size
    cbytes = 2 if i.bf16 else FP32
    trunk_io = 2 * tokens * d * FP32
    head_block = tokens * _per_block(i)
    norm_saved = 0 if i.finetune == "lora" else tokens * d * FP32  # a frozen final norm keeps no copy
    hidden = norm_saved + 2 * tokens * d * FP32 + tokens * d * FP32  # normed + selected rows; grad_h
    ce = v * d * FP32 + (v * d * cbytes if i.bf16 else 0) + min(i.chunk, tokens) * v * (FP32 + (cbytes if i.bf16 else 0))
    return trunk_io + head_block + hidden + ce


def reference_phase_bytes(i: PlanInputs) -> int:
    """Rho-1: the reference's no-grad forward (a block's transient) and its chunked CE, while the policy's
    trunk activations are held."""
    if i.reference is None:
        return 0
    tokens, r = i.batch * i.seq, i.reference
    cbytes = 2 if i.bf16 else FP32
    return tokens * (3 * r.dim * FP32 + 3 * r.ffn_hidden_dim * cbytes) + min(i.chunk, tokens) * r.vocab_size * (
        FP32 + cbytes)


def _value_head_params(i: PlanInputs) -> int:
    if not i.value_head:
        return 0
    d = i.args.dim
    return d + 1 if i.value_hidden is None else d * i.value_hidden + i.value_hidden + i.value_hidden + 1


def _trainable_matmul(c: ParamCounts, finetune: str) -> int:
    """Trainable parameters that bf16 autocast casts (and caches) per step: all but the embedding."""
    return c.trainable - c.embedding if finetune == "full" else c.trainable


def plan_memory(i: PlanInputs) -> MemoryPlan:
    if i.gpus < 1 or i.batch < 1 or i.seq < 1:
        raise ValueError(f"gpus, batch and seq must be >= 1 (got {i.gpus}, {i.batch}, {i.seq})")
    c = count_params(i.args, i.finetune, i.lora_rank, i.lora_targets, i.heads_trunk_blocks)
    n, pbytes = i.gpus, (2 if i.bf16 else FP32)
    sharded = n > 1 or i.cpu_offload
    offload = 0 if i.cpu_offload else 1
    parts = {
        "weights": offload * c.total * FP32 // n,
        "gradients": offload * c.trainable * FP32 // n,
        "optimizer": offload * 2 * c.trainable * FP32 // n,
        "reference": count_params(i.reference).total * FP32 if i.reference else 0,
        "value_head": 3 * _value_head_params(i) * FP32 + (i.batch * i.seq * i.args.dim * FP32 if i.value_head
                                                          else 0),
    }
    if sharded:  # FSDP2: the root (embedding, norm, output) stays gathered; two blocks gathered at a time
        parts["gathered_params"] = (c.embedding + c.norm_output + 2 * c.block) * pbytes + c.block * (pbytes + FP32)
    elif i.bf16:
        parts["autocast_weight_cache"] = _trainable_matmul(c, i.finetune) * 2
    act_no, act_ac = trunk_activations(i, c, False), trunk_activations(i, c, True)
    parts["activations"] = act_ac if i.activation_checkpointing else act_no
    head_grads = {"full": c.heads + c.norm_output, "heads": c.heads}.get(i.finetune, 0) * FP32 * offload
    if i.finetune == "lora":
        head_grads = c.lora * c.head_blocks // (c.trunk_blocks + c.head_blocks) * FP32 * offload
    phase = max(head_phase_bytes(i), reference_phase_bytes(i) + i.batch * i.seq * i.args.dim * FP32)
    parts["loss_and_heads"] = phase
    transient = parts.get("gathered_params", 0) + parts.get("autocast_weight_cache", 0)
    compute = parts["activations"] + phase + head_grads // (n if sharded else 1) + transient
    resident = parts["weights"] + parts["reference"] + parts["value_head"]
    peak = resident + parts["optimizer"] + max(compute, parts["gradients"])
    first = max(compute, parts["gradients"] + parts["optimizer"])
    host = (c.total + 3 * c.trainable) * FP32 // n if i.cpu_offload else 0
    notes = []
    if i.cpu_offload:
        notes.append("CPU offload: weights, gradients and AdamW state in host memory; the optimizer steps on CPU")
    return MemoryPlan(i, c, parts, act_no, act_ac, peak, first, host, notes)


def with_changes(i: PlanInputs, **changes: object) -> PlanInputs:
    return replace(i, **changes)
