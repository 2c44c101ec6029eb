"""Parameter counts of the vendor Transformer, read off an instance built on the `meta` device (no memory).

Groups: `embedding`, `trunk` (the blocks every head shares), `heads` (head 0 = Meta's last `layers` block, plus
`extra_heads`), `norm_output` (shared final norm + output projection). `trainable` follows `model.finetune`;
`lora` counts the adapter matrices peft adds (rank * (in + out) per targeted projection).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from vendor.meta_llama.model import ModelArgs, Transformer

LINEAR_NAMES = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")


def meta_transformer(args: ModelArgs) -> Transformer:
    """The vendor model on the meta device, random init skipped (exact shapes, no storage)."""
    from wmtp_core.model.adapter import _skip_param_init

    with _skip_param_init():
        return Transformer(args)


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _lora_numel(blocks: list[nn.Module], rank: int, targets: tuple[str, ...]) -> int:
    total = 0
    for block in blocks:
        for name, sub in block.named_modules():
            if isinstance(sub, nn.Linear) and name.rsplit(".", 1)[-1] in targets:
                total += rank * (sub.in_features + sub.out_features)
    return total


@dataclass(frozen=True)
class ParamCounts:
    embedding: int
    trunk: int
    heads: int
    norm_output: int
    trunk_blocks: int  # number of shared trunk blocks
    head_blocks: int  # = n_future
    block: int  # parameters of one block
    output: int  # output projection (V * D)
    trainable: int  # what the optimizer updates (policy only)
    lora: int  # adapter parameters (0 unless finetune == lora)

    @property
    def total(self) -> int:
        """Policy parameters including LoRA adapters."""
        return self.embedding + self.trunk + self.heads + self.norm_output + self.lora


def count_params(args: ModelArgs, finetune: str = "full", lora_rank: int = 16,
                 lora_targets: tuple[str, ...] = LINEAR_NAMES, heads_trunk_blocks: int = 0) -> ParamCounts:
    model = meta_transformer(args)
    trunk_blocks = list(model.layers[:-1])
    head_blocks = [model.layers[-1], *model.extra_heads]
    counts = {"embedding": _numel(model.tok_embeddings), "trunk": sum(_numel(b) for b in trunk_blocks),
              "heads": sum(_numel(b) for b in head_blocks),
              "norm_output": _numel(model.norm) + _numel(model.output)}
    lora = 0
    if finetune == "full":
        trainable = sum(counts.values())
    elif finetune == "lora":
        lora = _lora_numel(trunk_blocks + head_blocks, lora_rank, tuple(lora_targets))
        trainable = lora
    elif finetune == "heads":
        if heads_trunk_blocks > len(trunk_blocks):
            raise ValueError(f"model.heads_trunk_blocks={heads_trunk_blocks} exceeds the {len(trunk_blocks)} "
                             "trunk blocks")
        extra = trunk_blocks[len(trunk_blocks) - heads_trunk_blocks:] if heads_trunk_blocks else []
        trainable = counts["heads"] + sum(_numel(b) for b in extra)
    else:
        raise ValueError(f"model.finetune must be full, lora or heads, got {finetune!r}")
    return ParamCounts(**counts, trunk_blocks=len(trunk_blocks), head_blocks=len(head_blocks),
                       block=_numel(head_blocks[0]), output=model.output.weight.numel(), trainable=trainable,
                       lora=lora)
