"""`wmtp critic-report --synthetic`: Stage 1 on the planted-signal world with a micro model, then the critic report.

A micro Transformer (character vocabulary, a few layers, small dim, random init) and a value head are trained as in
Stage 1 with the trunk co-training (`freeze_trunk: false`: embeddings + trunk blocks and the value head get
gradients; the loss is `critic_loss`, the same PPO-clipped value loss towards gamma^(T-u) * R on correct AND
incorrect rows). Rows are drawn by a seeded sampler; the report runs on held-out problems from another seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

from wmtp_core.data.planted import CharTokenizer, Rule, planted_rows
from wmtp_core.weighting.critic import CriticConfig, critic_loss


@dataclass
class PlantedSettings:
    train_problems: int = 400
    eval_problems: int = 100
    steps: int = 80
    batch_size: int = 16
    lr: float = 6e-3
    dim: int = 64
    trunk_layers: int = 2
    n_heads: int = 4
    seed: int = 0
    rule: Rule = "identity"
    critic: CriticConfig = field(default_factory=CriticConfig)


def micro_model(vocab: int, s: PlantedSettings) -> Any:
    from vendor.meta_llama.model import ModelArgs, Transformer

    torch.manual_seed(s.seed)
    args = ModelArgs(dim=s.dim, n_layers=s.trunk_layers + 1, n_heads=s.n_heads, n_kv_heads=s.n_heads,
                     vocab_size=vocab, multiple_of=16, n_future_tokens=1, max_seq_len=256)
    return Transformer(args)


def train_planted(s: PlantedSettings) -> tuple[Any, Any, CharTokenizer, list[float]]:
    """(model, value head, tokenizer, per-step value losses) after s.steps co-training steps."""
    from wmtp_core.data.collate import MTPCollator, encode_example
    from wmtp_core.model.value_head import ValueHead
    from wmtp_core.train.stages import trunk_parameters

    tok = CharTokenizer()
    model = micro_model(tok.n_words, s)
    head = ValueHead(s.dim, s.dim)
    model.requires_grad_(False)
    params = [*trunk_parameters(model), *head.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
    encoded = [encode_example(tok, r, 256) for r in planted_rows(s.train_problems, s.seed, rule=s.rule)]
    collate = MTPCollator(pad_id=tok.pad_id, n_future=1)
    rng = random.Random(s.seed)
    losses = []
    for _ in range(s.steps):
        batch = collate(rng.sample(encoded, s.batch_size))
        normed = model.normed_trunk(model.trunk_forward(batch["input_ids"]))
        loss, _, _ = critic_loss(head, normed, batch["response_mask"], batch["is_correct"], s.critic)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model.eval(), head.eval(), tok, losses


def planted_report(s: PlantedSettings) -> tuple[dict[str, Any], list[float]]:
    """Train on the planted world, report on held-out planted problems (seed s.seed + 1)."""
    from wmtp_core.eval.critic_report import critic_report

    model, head, tok, losses = train_planted(s)
    rows = planted_rows(s.eval_problems, s.seed + 1, rule=s.rule)
    report = critic_report(model, head, tok, rows, s.critic, split=f"planted-heldout-seed{s.seed + 1}", max_len=256,
                           seed=s.seed)
    return report, losses
