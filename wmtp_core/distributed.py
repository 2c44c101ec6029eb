"""torchrun / FSDP2 runtime: rank detection, process group, global reductions and model sharding.

One process per device. `torchrun --nproc-per-node=N ...` sets RANK, WORLD_SIZE and LOCAL_RANK; without them the
process is a single rank and every helper here is a no-op (plain module, local sums), so one code path serves both.

Loss convention (with `shard_model`): each rank's loss is its local weighted sum divided by the GLOBAL valid-label
count (`global_token_count`), and FSDP reduces gradients as a SUM over ranks (divide factor 1). The summed gradient
is then exactly the gradient of the one-process loss on the whole global batch.

Backends: gloo on CPU (exercised by the tests), nccl on CUDA with bf16 compute / fp32 gradient reduction
(`MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`); the CUDA path is written for real but only runs
where CUDA exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from torch.distributed.fsdp import MixedPrecisionPolicy

# Transformer methods the training code calls directly instead of forward(); FSDP must gather around them.
FORWARD_METHODS = ("trunk_forward", "head_hidden", "head_logits", "normed_trunk")
_ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: global rank, number of ranks, rank on this node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # True when started by torchrun (the variables were set)


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (all or none); a partial or invalid set is an error naming the variable."""
    environ = os.environ if environ is None else environ
    present = [k for k in _ENV_KEYS if k in environ]
    if not present:
        return DistEnv()
    if len(present) != len(_ENV_KEYS):
        missing = [k for k in _ENV_KEYS if k not in environ]
        raise ValueError(f"environment: {', '.join(present)} set but {', '.join(missing)} missing "
                         f"(launch with torchrun, or set all of {', '.join(_ENV_KEYS)})")
    rank, world, local = (_env_int(environ, k) for k in _ENV_KEYS)
    if world < 1:
        raise ValueError(f"environment: WORLD_SIZE={world} must be >= 1")
    if not 0 <= rank < world:
        raise ValueError(f"environment: RANK={rank} outside [0, WORLD_SIZE={world})")
    if local < 0 or local > rank:
        raise ValueError(f"environment: LOCAL_RANK={local} must be in [0, RANK={rank}]")
    return DistEnv(rank, world, local, launched=True)


def _env_int(environ: Mapping[str, str], key: str) -> int:
    try:
        return int(environ[key])
    except ValueError as exc:
        raise ValueError(f"environment: {key}={environ[key]!r} is not an integer") from exc


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device: str | torch.device = "auto", timeout_s: float = 1800.0,
                     environ: Mapping[str, str] | None = None) -> tuple[DistEnv, torch.device]:
    """Join the process group when launched by torchrun; returns (env, this rank's device).

    device "auto" picks cuda:LOCAL_RANK when CUDA exists, else cpu. Without torchrun variables nothing is
    initialised and the device is returned as given ("auto" resolved). Idempotent.
    """
    env = detect_env(environ)
    dev = _rank_device(device, env.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if env.launched and not dist.is_initialized():
        dist.init_process_group(backend_for(dev), rank=env.rank, world_size=env.world_size,
                                timeout=timedelta(seconds=timeout_s))
    return env, dev


def _rank_device(device: str | torch.device, local_rank: int) -> torch.device:
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev


def init_local_group(device: torch.device) -> None:
    """A one-process group for FSDP2 without torchrun (CPU offload of a single GPU's training state)."""
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), store=dist.HashStore(), rank=0, world_size=1)


def destroy_distributed() -> None:
    """Leave the process group (after a barrier so no rank exits while others still communicate)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that logs and writes shared files."""
    return get_rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def _comm_device() -> torch.device:
    """Device collectives run on: the current CUDA device under nccl, else cpu."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, returned as a new tensor on the input's device (the input is not modified)."""
    if not is_initialized():
        return tensor.clone()
    work = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def global_token_count(local_count: int | torch.Tensor) -> int:
    """The loss denominator: valid labels summed over ranks (each rank passes its own count)."""
    local = torch.as_tensor(local_count, dtype=torch.int64).reshape(())
    return int(all_reduce_sum(local).item())


def mixed_precision_policy(device: torch.device, enabled: bool | None = None) -> MixedPrecisionPolicy:
    """bf16 params / fp32 gradient reduction on CUDA (default there); full fp32 otherwise."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    enabled = device.type == "cuda" if enabled is None else enabled
    if not enabled:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard_model(model: nn.Module, device: torch.device, mixed_precision: bool | None = None,
                reshard_after_forward: bool = True, cpu_offload: bool = False) -> nn.Module:
    """FSDP2: `fully_shard` each transformer block (layers, extra_heads), then the root; in place.

    The model must already sit on `device` with identical weights on every rank. The root keeps the
    embedding, the shared final norm and the output projection. The vendor Transformer's direct-call methods
    (FORWARD_METHODS) are registered so they gather parameters like forward(). Gradients are summed over ranks
    (see the module docstring). `cpu_offload`: FSDP2's CPUOffloadPolicy keeps the sharded parameters, their
    gradients (hence the AdamW state) in host memory and copies each unit to the device for its compute (pinned
    host memory on CUDA). Without a process group the model is returned unchanged.
    """
    if not is_initialized():
        return model
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard, register_fsdp_forward_method

    policy = mixed_precision_policy(device, mixed_precision)
    extra = {"offload_policy": CPUOffloadPolicy(pin_memory=device.type == "cuda")} if cpu_offload else {}
    for block in _blocks(model):
        fully_shard(block, mp_policy=policy, reshard_after_forward=reshard_after_forward, **extra)
    fully_shard(model, mp_policy=policy, **extra)
    for name in FORWARD_METHODS:
        if hasattr(model, name):
            register_fsdp_forward_method(model, name)
    _sum_gradients(model)
    return model


def _blocks(model: nn.Module) -> list[nn.Module]:
    blocks = [*getattr(model, "layers", []), *getattr(model, "extra_heads", [])]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no `layers` / `extra_heads` blocks to shard")
    return blocks


def _sum_gradients(module: nn.Module) -> None:
    from torch.distributed.fsdp import FSDPModule

    plain_sum = dist.get_backend() != "nccl"  # gloo has no PREMUL_SUM: reduce with SUM and scale separately
    for sub in module.modules():
        if isinstance(sub, FSDPModule):
            sub.set_gradient_divide_factor(1.0)
            if plain_sum:
                sub.set_force_sum_reduction_for_comms(True)


def reshard(module: nn.Module) -> None:
    """Put every FSDP unit of `module` back in its sharded state. The root keeps its parameters gathered after a
    forward (the sequential loss reads `output.weight` right after `head_hidden`); after a no-grad forward
    (frozen-trunk stage, reports) nothing reshards them, so call this before collecting `parameters()` for an
    optimizer or reading a state dict."""
    if not is_initialized():
        return
    from torch.distributed.fsdp import FSDPModule

    for sub in module.modules():
        if isinstance(sub, FSDPModule):
            sub.reshard()


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def _is_dtensor(tensor: torch.Tensor) -> bool:
    return hasattr(tensor, "full_tensor")


def all_reduce_grads(params: Iterable[nn.Parameter]) -> None:
    """Sum over ranks the gradients of REPLICATED parameters (a small module kept whole on every rank, e.g. the
    value head, which the critic deep-copies and FSDP cannot). Sharded (DTensor) gradients are skipped: FSDP
    already reduced them. One flat all_reduce; every rank must hold gradients for the same parameters."""
    if not is_initialized():
        return
    grads = [p.grad for p in params if p.grad is not None and not _is_dtensor(p.grad)]
    if not grads:
        return
    flat = all_reduce_sum(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset: offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def clip_grad_norm(params: Iterable[nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm and return it (before clipping). Plain gradients only: exactly
    torch.nn.utils.clip_grad_norm_. Sharded DTensor gradients (alone or mixed with replicated ones): the norm of
    the whole unsharded gradient, combined with the replicated part, then the same clipping rule."""
    params = [p for p in params if p.grad is not None]
    sharded = [p for p in params if _is_dtensor(p.grad)]
    if not sharded:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
    plain = [p for p in params if not _is_dtensor(p.grad)]
    squares = torch.nn.utils.get_total_norm([p.grad for p in sharded]).full_tensor().double().cpu() ** 2
    if plain:
        squares = squares + torch.nn.utils.get_total_norm([p.grad for p in plain]).double().cpu() ** 2
    total = squares.sqrt().float()
    for group in (sharded, plain):
        if group:
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, total.to(group[0].grad.device))
    return float(total)


def gather_full_state_dict(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """Full (unsharded) fp32-or-param-dtype state dict on CPU at rank 0, None on other ranks. All ranks call."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not is_sharded(model):
        return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    reshard(model)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    return state if is_main() else None


def reduce_metrics(metrics: Mapping[str, float], summed: Iterable[str] = ()) -> dict[str, float]:
    """Per-rank scalar metrics -> global ones in one all_reduce: keys in `summed` add up (loss terms already
    divided by the global denominator, token counts), all others are averaged over ranks. Every rank must pass
    the same keys."""
    if not is_initialized():
        return dict(metrics)
    keys = sorted(metrics)
    values = all_reduce_sum(torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64))
    summed = set(summed)
    world = get_world_size()
    return {k: float(v) if k in summed else float(v) / world for k, v in zip(keys, values.tolist())}


def unsharded_copy(model: nn.Module, factory: Callable[[], nn.Module]) -> nn.Module | None:
    """A plain CPU module with the full weights on rank 0 (None elsewhere), e.g. to export with the usual
    writers. `factory()` builds an empty module of the same architecture. Every rank calls it."""
    state = gather_full_state_dict(model)
    if state is None:
        return None
    with torch.device("meta"):
        plain = factory()
    plain.load_state_dict(state, strict=True, assign=True)
    return plain
