"""From a resolved config to a verdict: does one training step fit N GPUs of M GiB, and if not, what does.

`job_memory_check(cfg, gpus, gpu_memory_gb)` is the pure function a flow calls before it submits a training job
to a block that declares its GPU count and memory; `wmtp plan` prints the same verdict with the breakdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vendor.meta_llama.model import ModelArgs
from wmtp_core.config import ResolvedConfig
from wmtp_core.experiments import spec
from wmtp_core.plan.memory import GIB, MemoryPlan, PlanInputs, plan_memory, with_changes

# Meta's 7B multi-token-prediction checkpoint (params.json of 7B_1T_4): the vendor defaults with 4 heads.
SHAPES = {"7B_1T_4": ModelArgs(n_future_tokens=4)}
# Not all of a card's memory is the caching allocator's: CUDA context, NCCL buffers, fragmentation.
RESERVED_GIB = 1.0
USABLE_FRACTION = 0.95


class MemoryPlanError(RuntimeError):
    """The planned step does not fit (or cannot be planned); the message lists what would fit."""


def usable_bytes(gpu_memory_gb: float) -> int:
    """What a training step may use of a card of `gpu_memory_gb` GiB."""
    if gpu_memory_gb <= 0:
        raise ValueError(f"gpu memory must be > 0 GiB, got {gpu_memory_gb}")
    return int(gpu_memory_gb * GIB * USABLE_FRACTION - RESERVED_GIB * GIB)


def parse_memory(text: str) -> float:
    """'80GB', '80GiB', '80' -> 80.0 GiB (cards sold as 80 GB hold 80 GiB)."""
    raw = text.strip().upper().removesuffix("IB").removesuffix("B").removesuffix("G")
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"--gpu-memory {text!r}: expected a size like 80GB") from exc
    if value <= 0:
        raise ValueError(f"--gpu-memory {text!r}: must be > 0")
    return value


def read_model_args(model_dir: Path) -> ModelArgs:
    """Dims from a model directory's configs/params.json (artifacts layout); MemoryPlanError when unreadable."""
    from wmtp_core.artifacts.errors import ArtifactError
    from wmtp_core.artifacts.layout import ModelLayout
    from wmtp_core.model.adapter import read_params

    layout = ModelLayout(Path(model_dir))
    if not layout.params_json.is_file():
        raise MemoryPlanError(f"{layout.params_json}: not found; cannot plan without the model's dims "
                              "(pass --shape 7B_1T_4)")
    try:
        return read_params(layout)[0]
    except ArtifactError as exc:
        raise MemoryPlanError(str(exc)) from exc


def model_args_for(cfg: ResolvedConfig, shape: str | None = None, which: str = "policy") -> ModelArgs:
    """Model dims from a named shape, else from the configured model directory."""
    if shape is not None:
        if shape not in SHAPES:
            raise MemoryPlanError(f"unknown model shape {shape!r}; known: {sorted(SHAPES)}")
        return SHAPES[shape]
    return read_model_args(cfg.model_dir if which == "policy" else cfg.resolved_path("reference_model_dir"))


def inputs_from_config(cfg: ResolvedConfig, gpus: int, bf16: bool = True, shape: str | None = None,
                       args: ModelArgs | None = None, reference_args: ModelArgs | None = None) -> PlanInputs:
    """The plan's inputs for Stage 2 of `cfg` on `gpus` GPUs (bf16: CUDA autocast, as `precision: auto`).
    Model dims: `args` / `reference_args` when given, else the named `shape`, else the configured dirs."""
    args = args or model_args_for(cfg, shape)
    experiment = spec(cfg.experiment)
    reference = None
    if experiment.needs_reference:
        reference = reference_args or model_args_for(cfg, shape, which="reference")
    m, t = cfg.model, cfg.train
    return PlanInputs(args=args, batch=t.batch_size, seq=cfg.data.max_len, chunk=t.chunk_size,
                      finetune=m.finetune, lora_rank=m.lora.rank, lora_targets=tuple(m.lora.target_modules),
                      heads_trunk_blocks=m.heads_trunk_blocks, activation_checkpointing=m.activation_checkpointing,
                      bf16=bf16, gpus=gpus, cpu_offload=m.cpu_offload, reference=reference,
                      value_head=experiment.needs_stage1, value_hidden=cfg.stage1.value_hidden)


@dataclass
class Verdict:
    plan: MemoryPlan
    usable: int
    fits: bool
    options: list[tuple[str, MemoryPlan]]  # cheapest first; only those that fit

    def to_json(self) -> dict[str, object]:
        return {"fits": self.fits, "usable_bytes": self.usable, "plan": self.plan.to_json(),
                "options": [{"change": name, "peak_gib": round(p.peak / GIB, 2), "host_gib": round(p.host / GIB, 2)}
                            for name, p in self.options]}


def _candidates(i: PlanInputs) -> list[tuple[str, PlanInputs]]:
    """Shipped ways to shrink a step, cheapest (least change to the run) first."""
    out: list[tuple[str, PlanInputs]] = []
    if not i.activation_checkpointing:
        out.append(("model.activation_checkpointing=true", with_changes(i, activation_checkpointing=True)))
    ac = {"activation_checkpointing": True}
    if i.finetune != "lora":
        out.append(("model.finetune=lora (+ activation checkpointing)", with_changes(i, finetune="lora", **ac)))
    if i.finetune != "heads":
        out.append(("model.finetune=heads", with_changes(i, finetune="heads", heads_trunk_blocks=0)))
    if not i.cpu_offload and i.finetune == "full":
        out.append(("model.cpu_offload=true (+ activation checkpointing)",
                    with_changes(i, cpu_offload=True, **ac)))
    for gpus in (2, 4, 8):
        if gpus > i.gpus:
            out.append((f"{gpus} GPUs (+ activation checkpointing)", with_changes(i, gpus=gpus, **ac)))
    if i.batch > 1:
        out.append((f"train.batch_size=1, train.grad_accum x{i.batch} (+ activation checkpointing)",
                    with_changes(i, batch=1, **ac)))
    return out


def verdict(inputs: PlanInputs, gpu_memory_gb: float) -> Verdict:
    usable = usable_bytes(gpu_memory_gb)
    plan = plan_memory(inputs)
    fits = plan.peak <= usable
    options: list[tuple[str, MemoryPlan]] = []
    if not fits:
        for name, cand in _candidates(inputs):
            p = plan_memory(cand)
            if p.peak <= usable:
                options.append((name, p))
    return Verdict(plan, usable, fits, options)


def job_memory_check(cfg: ResolvedConfig, gpus: int, gpu_memory_gb: float, shape: str | None = None,
                     args: ModelArgs | None = None, reference_args: ModelArgs | None = None) -> Verdict:
    """Before submitting a training job to `gpus` GPUs of `gpu_memory_gb` GiB: the verdict, or MemoryPlanError
    (naming what would fit) when the step does not fit. Fails closed when the model dims cannot be read."""
    v = verdict(inputs_from_config(cfg, gpus, bf16=True, shape=shape, args=args, reference_args=reference_args),
                gpu_memory_gb)
    if not v.fits:
        raise MemoryPlanError(format_verdict(v, header=f"{cfg.experiment}: training step does not fit"))
    return v


def format_verdict(v: Verdict, header: str | None = None) -> str:
    p, i = v.plan, v.plan.inputs
    lines = [header] if header else []
    lines.append(f"per GPU ({i.gpus} GPU(s), finetune={i.finetune}, batch {i.batch} x seq {i.seq}, "
                 f"{'bf16' if i.bf16 else 'fp32'}, activation checkpointing "
                 f"{'on' if i.activation_checkpointing else 'off'}, cpu offload {'on' if i.cpu_offload else 'off'}):")
    lines.append(f"  parameters: {p.counts.total:,} total, {p.counts.trainable:,} trainable")
    for name, value in p.parts.items():
        lines.append(f"  {name:<22} {value / GIB:8.2f} GiB")
    lines.append(f"  {'(activations no ckpt)':<22} {p.activations_no_ac / GIB:8.2f} GiB")
    lines.append(f"  {'(activations ckpt)':<22} {p.activations_ac / GIB:8.2f} GiB")
    lines.append(f"  {'predicted peak':<22} {p.peak / GIB:8.2f} GiB of {v.usable / GIB:.2f} GiB usable")
    if p.host:
        lines.append(f"  {'host memory (offload)':<22} {p.host / GIB:8.2f} GiB")
    lines.append("FITS" if v.fits else "DOES NOT FIT")
    if not v.fits:
        if v.options:
            lines.append("options that fit (cheapest first):")
            lines += [f"  - {name}: peak {q.peak / GIB:.2f} GiB" + (f", host {q.host / GIB:.2f} GiB" if q.host else "")
                      for name, q in v.options]
        else:
            lines.append("no single shipped option fits; combine them or use larger GPUs")
    return "\n".join(lines)
