"""The speculative draft schedule: untimed (default) it is a function of acceptance alone, so a rerun under any
clock gives the same steps and tokens; timed, it follows measured step times."""

from __future__ import annotations

import random

import pytest

import wmtp_core.eval.speculative as speculative
from tests.fixtures.eval import permutation_model
from wmtp_core.eval.generate import SamplingConfig
from wmtp_core.eval.speculative import DraftLength, SpeculativeConfig, SpeculativeStats, speculative_generate

EOS, PAD = 2, 0
PROMPTS = [[1, 5, 9], [1, 7], [1, 4, 11, 6]]


def _decode(ids: list[int]) -> str:
    return " ".join(map(str, ids))


def _run(model, spec: SpeculativeConfig, monkeypatch, seed: int | None) -> tuple:
    """Tokens and the schedule's footprint; with `seed`, every perf_counter() call jumps a random 0..1 s."""
    if seed is not None:
        rng, now = random.Random(seed), [0.0]

        def lying_clock() -> float:
            now[0] += rng.random()
            return now[0]

        monkeypatch.setattr(speculative.time, "perf_counter", lying_clock)
    stats = SpeculativeStats()
    outs = [speculative_generate(model, [p], EOS, PAD, SamplingConfig(max_new_tokens=60), _decode, stats, spec)[0]
            for p in PROMPTS]
    monkeypatch.undo()
    return [o.tokens for o in outs], stats.forwards, list(stats.drafted), list(stats.accepted)


def test_untimed_schedule_is_the_same_under_any_clock(monkeypatch) -> None:
    model = permutation_model(vocab_size=16, wrong_every=5)  # heads 2, 3 wrong on every fifth token
    spec = SpeculativeConfig()
    quiet = _run(model, spec, monkeypatch, None)
    assert all(_run(model, spec, monkeypatch, seed) == quiet for seed in (1, 2))
    # the same clocks do move the timed schedule (so the check above can fail), never its tokens on this model
    timed = [_run(model, spec.model_copy(update={"timed": True}), monkeypatch, seed) for seed in (1, 2)]
    assert any(t[2:] != quiet[2:] for t in timed)
    assert all(t[0] == quiet[0] for t in timed)


@pytest.mark.parametrize(("rates", "cost", "expected"), [
    ([1.0, 1.0, 1.0], 0.1, 3),  # tokens 4 / cost 1.3 beats 3 / 1.2
    ([0.9, 0.5, 0.5], 0.1, 3),  # marginal joint 0.45, 0.225 > 0.1: 2.575/1.3 = 1.98 > 2.35/1.2 = 1.96
    ([0.9, 0.5, 0.1], 0.1, 2),  # third draft's joint 0.045 < cost: not a candidate
    ([0.3, 1.0, 1.0], 0.4, 0),  # nothing pays (0.3 < 0.4): a greedy step
])
def test_untimed_length_is_the_best_tokens_per_weight_cost(rates, cost, expected) -> None:
    stats = SpeculativeStats(draft_rates=list(rates), step_seconds={0: 9.0, 3: 0.001})  # ignored untimed
    assert DraftLength(3, True, cost, stats)._best() == expected


def test_timed_length_ignores_times_of_lengths_beyond_its_cap() -> None:
    # stats shared with an earlier call that drafted 3; this call may draft 1, and its head rarely hits, so no
    # length pays and only 0 drafts is a candidate: it is costed by weights, not from the foreign length-3 time
    stats = SpeculativeStats(draft_rates=[0.05, 1.0, 1.0], step_seconds={3: 0.001})
    assert DraftLength(1, True, 0.1, stats, timed=True)._best() == 0
