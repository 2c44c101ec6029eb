"""Self-speculative greedy decoding with the MTP heads: blockwise parallel decoding (Stern et al. 2018), as in the
MTP paper, with ONE model forward per step.

A step feeds, per row, the chunk [c, d_1..d_k] at cache slots [s, s+k]: c is the last emitted token (not yet
fed), d_i the draft for the i-th token after it. Head 0's argmax g_i at chunk index i is the greedy token after the
i-th fed token (the verify pass). A row accepts its first m drafts with d_{i+1} == g_i and emits d_1..d_m, g_m —
m + 1 >= 1 tokens per forward, all of them the verify pass's own argmax. In the same forward (the trunk output is
shared), extra heads 1..k' then run over the slots just accepted and their argmax at the last accepted slot s + m
are the next step's drafts (head j at position t predicts token t + j + 1). Extra heads never run on rejected
slots; head 0 and the trunk write their keys/values for the whole chunk, and the rejected part is either masked
or overwritten by the next chunk, so nothing rejected is ever attended to.

Batches: rows accept different numbers of drafts. The batch shares one slot cursor that advances by the largest
m + 1 among unfinished rows; a row that accepted less leaves a hole (its rejected slots below the cursor), which is
masked out of attention from then on, and its RoPE positions continue from its own length, not from the slot, so
every row sees exactly its own accepted sequence at its own positions. At batch 1 there are never holes.

Draft length: `draft_len` (1..n_future-1, default n_future-1) is the most drafts per step. With `adaptive` (the
default) each step uses the length with the most expected tokens per unit of cost: expected tokens from running
acceptance rates of heads 1..j (each conditional on the heads before it); cost 1 + k * `draft_cost` for k drafts,
`draft_cost` being the cost of one draft relative to a greedy step (default: one head block's parameters over those
of trunk + head 0 + output, the weight bytes a memory-bound step reads). Only lengths whose last draft is expected
to pay for itself (joint acceptance > `draft_cost`) are candidates. When no draft pays, steps are plain greedy steps
(one token through trunk and head 0) and a single-draft probe runs after 1, 2, 4 .. 64 steps, so the cost at zero
acceptance approaches greedy's. Extra heads that skipped steps catch up from the stored trunk outputs in one
multi-position pass the next time they draft. This schedule is a function of the model's outputs alone, so a rerun
gives the same tokens. With `timed`, measured step times (kept in `SpeculativeStats.step_seconds`) replace the
weight-cost model: faster on hardware whose step cost is not proportional to weight bytes (cache or kernel cliffs),
but the schedule, hence the chunk widths, then depends on timing, and so may the output at a floating-point
near-tie (next paragraph).

Exactness: outputs equal plain greedy decoding when each argmax does not depend on the chunk width. In exact
arithmetic it does not; in floating point a k+1-token forward may differ from a 1-token forward in the last bits
(matmul reduction order), which can flip an argmax only at a near-tie of the two best logits. Verification
therefore compares drafts with the verify pass's own argmax (never with logits from another pass), so the output
is always the greedy sequence of the chunked forward, and (untimed schedule) the same on every run; the tests assert
token equality with a plain greedy loop on models whose top logits are well separated, and the benchmark reports
whether every output was identical.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict, Field

from vendor.meta_llama.generation import KVCache, padding_attn_mask
from vendor.meta_llama.model import Transformer
from wmtp_core.eval.generate import Generation, SamplingConfig, Tracker, left_pad

PROBE_MAX_WAIT = 64  # steps between single-draft probes when no draft pays off
RATE_STEP = 0.25  # weight of the newest observation in the running acceptance rates
PRIOR_RATE = 0.5  # acceptance rate assumed for a head before any of its drafts was checked


class SpeculativeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    draft_len: int | None = Field(None, ge=1)  # most drafts per step; None = n_future - 1
    adaptive: bool = True  # draft only as many as pay for themselves (see module doc)
    timed: bool = False  # adaptive cost from measured step times instead of weights (outputs may vary, module doc)
    draft_cost: float | None = Field(None, ge=0.0)  # one draft's cost relative to a greedy step; None = weights

    def resolve(self, n_future: int) -> int:
        if n_future < 2:
            raise ValueError("self-speculative decoding needs a model with extra heads (n_future_tokens >= 2)")
        k = n_future - 1 if self.draft_len is None else self.draft_len
        if k > n_future - 1:
            raise ValueError(f"draft_len={k} exceeds the model's extra heads (n_future_tokens - 1 = {n_future - 1})")
        return k


@dataclass
class SpeculativeStats:
    forwards: int = 0  # model forwards (prefill included)
    row_forwards: int = 0  # forwards x rows still decoding in them
    emitted: int = 0  # tokens those rows produced (a finishing EOS included)
    drafted: list[int] = field(default_factory=list)  # index j-1: drafts made by extra head j
    accepted: list[int] = field(default_factory=list)  # index j-1: of those, accepted
    uneven_steps: int = 0  # steps in which the unfinished rows of a batch accepted different numbers of drafts
    # Adaptive state carried over to later calls that share these stats (the harness and benchmarks pass one per
    # run), so a call starts from what earlier calls learnt instead of the priors:
    step_seconds: dict[int, float] = field(default_factory=dict)  # running step time per draft length
    draft_rates: list[float] = field(default_factory=list)  # running acceptance rate per extra head
    probe: list[int] = field(default_factory=lambda: [0, 1])  # greedy steps since the last probe, steps between

    @property
    def acceptance_rate(self) -> float:
        return sum(self.accepted) / sum(self.drafted) if sum(self.drafted) else 0.0

    @property
    def tokens_per_forward(self) -> float:
        return self.emitted / self.row_forwards if self.row_forwards else 0.0

    def head_acceptance(self) -> dict[str, float]:
        """Per extra head j: accepted / drafted (a draft of head j counts only if heads < j were accepted)."""
        return {f"head{j + 1}": (a / d if d else 0.0) for j, (a, d) in enumerate(zip(self.accepted, self.drafted))}

    def record(self, k: int, accepted: list[int]) -> None:
        """One verify step that checked k drafts; `accepted` = accepted drafts of each unfinished row."""
        grow = k - len(self.drafted)
        if grow > 0:
            self.drafted += [0] * grow
            self.accepted += [0] * grow
        self.uneven_steps += int(len(set(accepted)) > 1)
        for m in accepted:
            for j in range(k):
                self.drafted[j] += 1
                self.accepted[j] += int(m > j)

    def to_dict(self) -> dict:
        return {"forwards": self.forwards, "tokens_per_forward": round(self.tokens_per_forward, 4),
                "draft_acceptance": round(self.acceptance_rate, 4),
                "head_acceptance": {k: round(v, 4) for k, v in self.head_acceptance().items()},
                "drafted": sum(self.drafted), "accepted": sum(self.accepted), "uneven_steps": self.uneven_steps}


def draft_cost(model: Transformer) -> float:
    """Weights one extra head block reads relative to a greedy step (trunk + head 0 + output projection)."""
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    return count(model.head_block(1)) / (count(model.layers) + count(model.output))


class DraftLength:
    """Each step's draft length: fixed, or (adaptive) the one with the most expected tokens per unit of cost.

    Expected tokens of k drafts: 1 + the sum over j <= k of the joint acceptance of heads 1..j (running rates).
    Candidates: the lengths whose last draft pays for itself under the weight-cost rule (joint acceptance > `cost`),
    and 0. Cost of a step with k drafts: 1 + k * `cost` greedy steps, or, when `timed`, its measured seconds
    (running mean; a length not yet timed is tried once, longest first, and extrapolated from the nearest timed
    one until then). When 0 drafts is best, a one-draft probe runs after 1, 2, 4 .. PROBE_MAX_WAIT greedy steps.
    Untimed, the schedule depends only on acceptance, so reruns are identical."""

    def __init__(self, k_max: int, adaptive: bool, cost: float, stats: SpeculativeStats | None = None,
                 timed: bool = False) -> None:
        self.k_max, self.adaptive, self.cost, self.timed = k_max, adaptive, cost, timed
        stats = stats if stats is not None else SpeculativeStats()
        stats.draft_rates += [PRIOR_RATE] * (k_max - len(stats.draft_rates))
        self.rate = stats.draft_rates  # running P(head j's draft accepted | drafts before it accepted) (shared)
        self.seconds = stats.step_seconds  # running seconds of a step with k drafts (shared; timed only)
        self.probe = stats.probe  # [greedy steps since the last probe, steps between probes] (shared)

    def _cost(self, k: int) -> float:
        timed = [m for m in self.seconds if m <= self.k_max] if self.timed else []  # stats may hold longer lengths
        if not timed:
            return 1 + k * self.cost
        if k in self.seconds:
            return self.seconds[k]
        near = min(timed, key=lambda m: (abs(m - k), m))
        return self.seconds[near] * (1 + k * self.cost) / (1 + near * self.cost)

    def _best(self) -> int:
        tokens, joint = [1.0], 1.0
        for rate in self.rate[:self.k_max]:
            joint *= rate
            tokens.append(tokens[-1] + joint)
        paying = sum(1 for t0, t1 in zip(tokens, tokens[1:]) if t1 - t0 > self.cost) if self.k_max else 0
        unmeasured = [k for k in range(1, paying + 1) if k not in self.seconds] if self.timed else []
        if unmeasured:  # a length the weight rule says pays but never timed: time it (each once per stats)
            return unmeasured[-1]
        # only lengths the weight rule says pay are candidates: a stale low time of an unused length (measured in a
        # quiet moment, while the current length's time runs high under load) never lures it into useless drafts
        return max(range(paying + 1), key=lambda k: tokens[k] / self._cost(k))

    def next(self) -> int:
        if not self.adaptive:
            return self.k_max
        k = self._best()
        if k:
            self.probe[:] = [0, 1]
            return k
        self.probe[0] += 1
        if self.probe[0] < self.probe[1]:
            return 0
        self.probe[:] = [0, min(2 * self.probe[1], PROBE_MAX_WAIT)]
        return 1

    def update(self, k: int, accepted: list[int], seconds: float | None = None) -> None:
        """One step with k drafts: each unfinished row's accepted count, and the step's time (None: not typical,
        e.g. extra heads catching up on a backlog)."""
        for j in range(k):
            seen = [m for m in accepted if m >= j]  # rows whose drafts before head j+1's were all accepted
            if seen:
                hit = sum(m > j for m in seen) / len(seen)
                self.rate[j] += RATE_STEP * (hit - self.rate[j])
        if seconds is not None and self.timed:
            old = self.seconds.get(k, seconds)
            self.seconds[k] = old + RATE_STEP * (seconds - old)


def _argmax(model: Transformer, hidden: torch.Tensor) -> torch.Tensor:
    """hidden (R, D) -> argmax ids (R,) of the output projection after the final norm."""
    return model.output(model.norm(hidden)).argmax(-1)


class _Decoder:
    """Cache, slot cursor and per-slot validity / RoPE positions / trunk outputs of one speculative batch."""

    def __init__(self, model: Transformer, prompts: Sequence[Sequence[int]], pad_id: int, max_new: int,
                 k_max: int) -> None:
        self.model = model
        device = model.tok_embeddings.weight.device
        self.tokens, valid = left_pad(prompts, pad_id, device)
        batch, width = self.tokens.shape
        spare = max_new * (k_max + 1) if batch > 1 else max_new  # holes (batches only) use slots too
        total = width + spare + k_max + 1
        self.valid = torch.ones((batch, total), dtype=torch.bool, device=device)
        if valid is not None:
            self.valid[:, :width] = valid
        self.masked = valid is not None  # padding or holes: attention needs the validity mask
        self.shifted = False  # some row's RoPE positions no longer equal its slots (it has holes)
        self.positions = torch.arange(total, device=device).expand(batch, total).clone()
        self.trunk = torch.empty((batch, total, model.args.dim), dtype=model.tok_embeddings.weight.dtype,
                                 device=device)
        self.cache = KVCache.for_model(model, batch, total)
        self.rows = torch.arange(batch, device=device)
        self.batch = batch
        self.slot = 0  # next free slot
        self.head_done = [0] * model.n_future  # extra head j has keys/values for slots [0, head_done[j])
        self.last = torch.zeros(batch, dtype=torch.long, device=device)  # slot of each row's last fed token
        self.backlog = 0  # most slots an extra head caught up on in the last step

    def _mask(self, start: int, n: int) -> torch.Tensor | None:
        return padding_attn_mask(self.valid, start, n) if self.masked else None

    def _pos(self, start: int, n: int) -> torch.Tensor | None:
        return self.positions[:, start:start + n] if self.shifted else None

    def step(self, chunk: torch.Tensor, k: int, done: list[bool] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward over `chunk` (B, n) at the cursor: the prompt (done None), or [current, drafts] (n - 1
        drafts to verify). Returns head 0's argmax at every chunk position (B, n), accepted drafts (B,) and the
        next drafts of heads 1..k (B, k) at each row's last accepted slot.

        Heads 1..k run over the chunk (after catching up on slots they skipped) before acceptance is known; a
        head's hidden state at chunk position m depends only on positions <= m, which are accepted when m is the
        last accepted one, so it is exact there. Its projection is made with head 0's, betting on full
        acceptance (one output projection per step); a row that accepted less is projected again at its own
        last accepted slot. Rejected slots at or past the new cursor are overwritten by the next chunk; holes
        (rejected slots below it) are masked out of attention from then on."""
        model, start, n = self.model, self.slot, chunk.shape[1]
        if done is not None and self.shifted:  # rows sit at their own positions; otherwise position = slot
            self.positions[:, start:start + n] = (self.positions[self.rows, self.last][:, None] + 1
                                                  + torch.arange(n, device=chunk.device))
        mask, pos = self._mask(start, n), self._pos(start, n)
        rope = model.rope_for(start, n, chunk.device, pos)  # one table for the trunk and every head over the chunk
        self.trunk[:, start:start + n] = model.trunk_forward(chunk, start, self.cache, mask, pos, rope)
        verify = n if done is not None else 1  # the prompt: only its last position is projected
        hidden = [model.head_hidden(self.trunk[:, start:start + n], 0, start, self.cache, mask, pos,
                                    rope)[:, n - verify:]]
        self.backlog = max((start - self.head_done[j] for j in range(1, k + 1)), default=0)
        extra = []  # heads 1..k over the chunk (B, n, D) each
        for j in range(1, k + 1):
            first, end = self.head_done[j], start + n
            out = model.head_hidden(self.trunk[:, first:end], j, first, self.cache, self._mask(first, end - first),
                                    self._pos(first, end - first), rope if first == start else None)
            extra.append(out[:, -n:])
        ids = _argmax(model, torch.cat([hidden[0], *(h[:, -1:] for h in extra)], dim=1).flatten(0, 1))
        ids = ids.view(self.batch, verify + k)
        verified, drafts = ids[:, :verify], ids[:, verify:]
        if done is None:
            accepted, advance = self.last.new_zeros(self.batch), n
            self.last[:] = start + n - 1
        else:
            accepted, advance = self._accept(chunk[:, 1:], verified, done)
            self.last = start + accepted
        self.slot = start + advance
        for j in range(1, k + 1):
            self.head_done[j] = self.slot
        if k and done is not None and n > 1 and bool((accepted < n - 1).any()):
            at = extra[0].new_empty((self.batch, k, extra[0].shape[-1]))
            for j, h in enumerate(extra):
                at[:, j] = h[self.rows, accepted]
            drafts = _argmax(model, at.flatten(0, 1)).view(self.batch, k)
        return verified, accepted, drafts

    def _accept(self, drafts: torch.Tensor, verified: torch.Tensor, done: list[bool]) -> tuple[torch.Tensor, int]:
        """Accepted drafts per row (B,) and how far the shared cursor advances; marks holes invalid."""
        if drafts.shape[1] == 0:
            return self.last.new_zeros(self.batch), 1
        accepted = (drafts == verified[:, :-1]).long().cumprod(dim=1).sum(dim=1)  # (B,)
        if self.batch == 1:
            return accepted, int(accepted) + 1
        start = self.slot
        finished = torch.tensor(done, device=drafts.device)
        advance = int(accepted.masked_fill(finished, -1).max()) + 1
        accepted = accepted.clamp(max=advance - 1).masked_fill(finished, advance - 1)  # finished: no holes
        holes = torch.arange(advance, device=drafts.device)[None, :] > accepted[:, None]  # (B, advance)
        if bool(holes.any()):
            self.valid[:, start:start + advance] &= ~holes
            self.masked = self.shifted = True
        return accepted, advance


def _push(tracker: Tracker, row: int, tokens: list[int]) -> int:
    """Feed tokens to an unfinished row; returns how many it consumed (up to and including a finishing one)."""
    for i, token in enumerate(tokens):
        tracker.push(row, token)
        if tracker.done[row]:
            return i + 1
    return len(tokens)


@torch.inference_mode()
def speculative_generate(model: Transformer, prompts: Sequence[Sequence[int]], eos_id: int, pad_id: int,
                         cfg: SamplingConfig, decode, stats: SpeculativeStats | None = None,
                         spec: SpeculativeConfig | None = None) -> list[Generation]:
    """Greedy decoding of every prompt (token ids, BOS included), drafting with the extra heads; one forward per
    step. Same outputs as `generate` at temperature 0 (see the module doc on floating point)."""
    if cfg.temperature != 0.0:
        raise ValueError("self-speculative decoding is greedy only: use temperature 0")
    spec = spec or SpeculativeConfig()
    k_max = spec.resolve(model.n_future)
    stats = stats if stats is not None else SpeculativeStats()
    control = DraftLength(k_max, spec.adaptive, draft_cost(model) if spec.draft_cost is None else spec.draft_cost,
                          stats, spec.timed)
    run = _Decoder(model, prompts, pad_id, cfg.max_new_tokens, k_max)
    tracker = Tracker(len(prompts), eos_id, cfg, decode)
    verified, _, drafts = run.step(run.tokens, control.next())
    current = verified[:, 0]
    for row, token in enumerate(current.tolist()):
        stats.emitted += _push(tracker, row, [token])
    stats.forwards, stats.row_forwards = stats.forwards + 1, stats.row_forwards + len(prompts)
    while not tracker.all_done():
        live = [row for row, done in enumerate(tracker.done) if not done]
        checked, k = drafts.shape[1], control.next()  # drafts verified now, drafts made now for the next step
        started = time.perf_counter()
        verified, accepted, next_drafts = run.step(
            torch.cat([current[:, None], drafts], dim=1) if checked else current[:, None], k, tracker.done)
        if checked:
            counts, ids, draft_ids = accepted.tolist(), verified.tolist(), drafts.tolist()
            for row in live:
                m = counts[row]
                stats.emitted += _push(tracker, row, draft_ids[row][:m] + [ids[row][m]])
        else:
            counts = [0] * len(tracker.done)
            for row, token in zip(live, verified[live, 0].tolist()):
                stats.emitted += _push(tracker, row, [token])
        stats.forwards, stats.row_forwards = stats.forwards + 1, stats.row_forwards + len(live)
        stats.record(checked, [counts[row] for row in live])
        steady = checked == k and run.backlog == 0  # a step of length k with no catch-up: its time says what k costs
        control.update(checked, [counts[row] for row in live], time.perf_counter() - started if steady else None)
        current, drafts = (verified[run.rows, accepted] if checked else verified[:, 0]), next_drafts
    return tracker.results()
