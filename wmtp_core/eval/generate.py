"""Batched sampling from the next-token head of an MTP model with a KV cache.

Prompts are left-padded into one batch (padding is masked; RoPE is relative, so the shift does not change
attention). Each step feeds only the new token. A sequence finishes on EOS, on a stop string (the text is cut
before it) or after `max_new_tokens`. Temperature 0 is greedy; otherwise temperature + top-p (nucleus)
sampling from a seeded generator, so the same seed gives the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from vendor.meta_llama.generation import KVCache, padding_attn_mask
from vendor.meta_llama.model import Transformer

FinishReason = Literal["eos", "stop", "length"]


class SamplingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0.0)  # 0 = greedy
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1)
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class Generation:
    tokens: list[int] = field(default_factory=list)  # generated ids, EOS excluded
    text: str = ""
    finish_reason: FinishReason = "length"


class Tracker:
    """Per-sequence output, EOS / stop-string / length finishing, shared by plain and speculative decoding."""

    def __init__(self, batch: int, eos_id: int, cfg: SamplingConfig, decode) -> None:
        self.outputs = [Generation() for _ in range(batch)]
        self.done = [False] * batch
        self.eos_id, self.cfg, self.decode = eos_id, cfg, decode

    def push(self, row: int, token: int) -> None:
        if self.done[row]:
            return
        out = self.outputs[row]
        if token == self.eos_id:
            self._finish(row, "eos")
            return
        out.tokens.append(token)
        if self.cfg.stop and self._stop_index(self.decode(out.tokens)) is not None:
            self._finish(row, "stop")
        elif len(out.tokens) >= self.cfg.max_new_tokens:
            self._finish(row, "length")

    def _stop_index(self, text: str) -> int | None:
        hits = [i for i in (text.find(s) for s in self.cfg.stop) if i >= 0]
        return min(hits) if hits else None

    def _finish(self, row: int, reason: FinishReason) -> None:
        self.done[row] = True
        self.outputs[row].finish_reason = reason

    def all_done(self) -> bool:
        return all(self.done)

    def results(self) -> list[Generation]:
        for out in self.outputs:
            text = self.decode(out.tokens)
            cut = self._stop_index(text)
            out.text = text if cut is None else text[:cut]
        return self.outputs


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """tokens (B, P) left-padded, and valid (B, P) — None when no prompt needed padding."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (e.g. BOS)")
    width = max(len(p) for p in prompts)
    tokens = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):
        tokens[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long, device=device)
        valid[row, width - len(prompt):] = True
    return tokens, (None if bool(valid.all()) else valid)


def grow_valid(valid: torch.Tensor | None, total: int) -> torch.Tensor | None:
    """Extend the padding mask (B, P) to (B, total): everything after the prompt is real."""
    if valid is None:
        return None
    extra = torch.ones((valid.shape[0], total - valid.shape[1]), dtype=torch.bool, device=valid.device)
    return torch.cat([valid, extra], dim=1)


def mask_for(valid: torch.Tensor | None, start_pos: int, seqlen: int) -> torch.Tensor | None:
    return None if valid is None else padding_attn_mask(valid, start_pos, seqlen)


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
                ) -> torch.Tensor:
    """logits (B, V) -> token ids (B,): argmax when temperature == 0, else temperature + nucleus sampling."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass strictly above each token
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the top token always survives
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(model: Transformer, prompts: Sequence[Sequence[int]], eos_id: int, pad_id: int,
             cfg: SamplingConfig, decode) -> list[Generation]:
    """Decode every prompt (token ids, BOS included) with the next-token head; one Generation per prompt."""
    device = model.tok_embeddings.weight.device
    tokens, valid = left_pad(prompts, pad_id, device)
    width = tokens.shape[1]
    valid = grow_valid(valid, width + cfg.max_new_tokens)
    cache = KVCache.for_model(model, len(prompts), width + cfg.max_new_tokens)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    tracker = Tracker(len(prompts), eos_id, cfg, decode)
    start, step_input = 0, tokens
    while True:
        mask = mask_for(valid, start, step_input.shape[1])
        trunk = model.trunk_forward(step_input, start, cache, mask)
        hidden = model.head_hidden(trunk, 0, start, cache, mask)  # every position: fills head 0's cache
        logits = model.output(model.norm(hidden[:, -1]))  # (B, V)
        next_ids = sample_next(logits, cfg.temperature, cfg.top_p, generator)  # (B,)
        for row, token in enumerate(next_ids.tolist()):
            tracker.push(row, token)
        if tracker.all_done():
            return tracker.results()
        start += step_input.shape[1]
        step_input = next_ids[:, None]
