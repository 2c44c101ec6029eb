"""What the policy trains (`model.finetune`): every weight, LoRA adapters through peft, or the head blocks only.

* full: unchanged model, every parameter trains (the default).
* lora: `peft.LoraModel` injects adapters in place on the configured projections (wq wk wv wo w1 w2 w3) of every
  trunk and head block; base weights are frozen. The vendor Transformer stays the module the training code
  calls (trunk_forward, head_hidden, ...); state-dict keys gain peft's `.base_layer` / `.lora_A.default` names,
  so checkpoints hold base + adapters and resume exactly. The exported model is the merged Meta-layout model
  (`merged_model`: peft's merge_and_unload on a plain copy).
* heads: only the future-token head blocks (Meta's last `layers` block and `extra_heads`) plus the last
  `heads_trunk_blocks` trunk blocks train; embedding, other trunk blocks, final norm and output stay frozen.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vendor.meta_llama.model import ModelArgs, Transformer
from wmtp_core.config import LoraConfig, ModelConfig

ADAPTER = "default"


def _peft_config(lora: LoraConfig) -> Any:
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=list(lora.target_modules), bias="none")


def inject_lora(model: Transformer, lora: LoraConfig) -> Transformer:
    """Add LoRA adapters in place (peft initialises A randomly, B to zero: the model is unchanged)."""
    from peft import LoraModel

    LoraModel(model, _peft_config(lora), ADAPTER)
    return model


def apply_finetune(model: Transformer, cfg: ModelConfig) -> Transformer:
    """Prepare the freshly loaded policy for `cfg.finetune` (in place): LoRA injects its adapters."""
    if cfg.finetune == "lora":
        inject_lora(model, cfg.lora)
    if cfg.finetune == "heads" and cfg.heads_trunk_blocks > len(model.layers) - 1:
        raise ValueError(f"model.heads_trunk_blocks={cfg.heads_trunk_blocks} exceeds the model's "
                         f"{len(model.layers) - 1} trunk blocks")
    return model


def _allowed(model: Transformer, cfg: ModelConfig) -> list[nn.Parameter]:
    if cfg.finetune == "full":
        return list(model.parameters())
    if cfg.finetune == "lora":
        return [p for name, p in model.named_parameters() if ".lora_" in name]
    n_trunk = len(model.layers) - 1
    blocks = [*model.layers[n_trunk - cfg.heads_trunk_blocks:], *model.extra_heads]
    return [p for block in blocks for p in block.parameters()]


def set_trainable(model: Transformer, cfg: ModelConfig, scope: list[nn.Parameter] | None = None
                  ) -> list[nn.Parameter]:
    """Freeze the policy, then unfreeze what `cfg.finetune` trains (within `scope` when given); returns those."""
    model.requires_grad_(False)
    allowed = _allowed(model, cfg)
    if scope is not None:
        wanted = {id(p) for p in scope}
        allowed = [p for p in allowed if id(p) in wanted]
    for p in allowed:
        p.requires_grad_(True)
    return allowed


def merged_model(state: dict[str, torch.Tensor], args: ModelArgs, lora: LoraConfig) -> Transformer:
    """A plain Transformer (Meta keys) whose projections are base + (alpha / rank) * B @ A, via peft's merge."""
    from peft import LoraModel

    from wmtp_core.plan.counts import meta_transformer

    wrapper = LoraModel(meta_transformer(args), _peft_config(lora), ADAPTER)
    wrapper.model.load_state_dict(state, strict=True, assign=True)
    return wrapper.merge_and_unload()
