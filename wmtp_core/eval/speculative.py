"""Self-speculative greedy decoding: the extra MTP heads draft, the next-token head verifies.

State between steps: `current` — the last emitted token, not yet fed — and drafts d_1..d_{F-1} for the tokens
after it (head k at position t predicts t+k+1). One forward feeds [current, d_1..d_{F-1}] at `pos`; head 0's
argmax g_i at each fed position is the greedy token after it. Draft d_{i+1} is accepted while it equals g_i;
with m accepted drafts the step emits d_1..d_m and g_m (m + 1 tokens, at least one per forward), and the next
drafts are the extra heads' argmax at position pos + m. A batch advances by the smallest m among unfinished
rows (a row that matched further emits the same tokens next step). Rejected positions stay in the KV cache but
are overwritten by the next step before any query can see them, so greedy output is token-for-token identical
to plain greedy decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vendor.meta_llama.generation import KVCache
from vendor.meta_llama.model import Transformer
from wmtp_core.eval.generate import Generation, SamplingConfig, Tracker, grow_valid, left_pad, mask_for


@dataclass
class SpeculativeStats:
    forwards: int = 0
    emitted: int = 0  # tokens emitted per row summed over steps (batch-level: m + 1 per step)
    drafted: int = 0
    accepted: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def _head_hiddens(model: Transformer, trunk: torch.Tensor, start: int, cache: KVCache,
                  mask: torch.Tensor | None) -> list[torch.Tensor]:
    """Every head block over every position (B, S, D) each: their KV caches need all positions."""
    return [model.head_hidden(trunk, k, start, cache, mask) for k in range(model.n_future)]


def _argmax(model: Transformer, hidden: torch.Tensor) -> torch.Tensor:
    """Greedy ids of hidden states (..., D): the vocabulary projection is the costly part, so callers pass only
    the positions they need."""
    return model.output(model.norm(hidden)).argmax(-1)


def _accepted(drafts: torch.Tensor, greedy: torch.Tensor, done: list[bool]) -> int:
    """Smallest number of leading drafts (B, F-1) confirmed by the verifier (B, F-1) over unfinished rows."""
    matches = (drafts == greedy).long().cumprod(dim=1).sum(dim=1)  # (B,)
    live = [m for m, finished in zip(matches.tolist(), done) if not finished]
    return min(live) if live else 0


@torch.inference_mode()
def speculative_generate(model: Transformer, prompts: Sequence[Sequence[int]], eos_id: int, pad_id: int,
                         cfg: SamplingConfig, decode, stats: SpeculativeStats | None = None
                         ) -> list[Generation]:
    if cfg.temperature != 0.0:
        raise ValueError("self-speculative decoding is greedy only: use temperature 0")
    stats = stats if stats is not None else SpeculativeStats()
    n_future = model.n_future
    device = model.tok_embeddings.weight.device
    tokens, valid = left_pad(prompts, pad_id, device)
    width = tokens.shape[1]
    total = width + cfg.max_new_tokens + n_future
    valid = grow_valid(valid, total)
    cache = KVCache.for_model(model, len(prompts), total)
    tracker = Tracker(len(prompts), eos_id, cfg, decode)

    trunk = model.trunk_forward(tokens, 0, cache, mask_for(valid, 0, width))
    hiddens = _head_hiddens(model, trunk, 0, cache, mask_for(valid, 0, width))
    greedy = torch.stack([_argmax(model, h[:, -1]) for h in hiddens], dim=1)  # (B, F)
    stats.forwards += 1
    current, drafts, pos = greedy[:, 0], greedy[:, 1:], width
    for row, token in enumerate(current.tolist()):
        tracker.push(row, token)
    while not tracker.all_done():
        step_input = torch.cat([current[:, None], drafts], dim=1)  # (B, F)
        mask = mask_for(valid, pos, n_future)
        trunk = model.trunk_forward(step_input, pos, cache, mask)
        hiddens = _head_hiddens(model, trunk, pos, cache, mask)
        verified = _argmax(model, hiddens[0])  # (B, F): greedy token after each fed position
        m = _accepted(drafts, verified[:, :-1], tracker.done)
        emitted = torch.cat([drafts[:, :m], verified[:, m:m + 1]], dim=1)  # (B, m + 1)
        for row, row_tokens in enumerate(emitted.tolist()):
            for token in row_tokens:
                tracker.push(row, token)
        stats.forwards += 1
        stats.drafted += n_future - 1
        stats.accepted += m
        stats.emitted += m + 1
        drafts = torch.stack([_argmax(model, h[:, m]) for h in hiddens[1:]], dim=1)  # (B, F-1)
        current, pos = verified[:, m], pos + m + 1
    return tracker.results()
