"""KV-cache decoding, sampling controls and self-speculative decoding on tiny random / briefly trained models."""

from __future__ import annotations

import random

import pytest
import torch

from tests.fixtures.eval import rule_next, tiny_model, trained_tiny_model
from vendor.meta_llama.generation import KVCache
from wmtp_core.eval.generate import SamplingConfig, generate, sample_next
from wmtp_core.eval.speculative import SpeculativeStats, speculative_generate

EOS, PAD = 2, 0


def decode(ids: list[int]) -> str:
    return " ".join(f"t{i}" for i in ids)


def random_prompts(n: int, vocab: int, seed: int, max_len: int = 12) -> list[list[int]]:
    rng = random.Random(seed)
    return [[1] + [rng.randrange(3, vocab) for _ in range(rng.randrange(1, max_len))] for _ in range(n)]


def reference_greedy(model, prompt: list[int], max_new: int, eos: int = EOS) -> list[int]:
    """No cache, no batching: the full forward over the whole sequence each step."""
    tokens, out = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new):
            token = int(model(torch.tensor([tokens]), n_heads=1)[0, -1, 0].argmax())
            if token == eos:
                break
            out.append(token)
            tokens.append(token)
    return out


@pytest.fixture(scope="module")
def model():
    return tiny_model(vocab_size=97)


@pytest.fixture(scope="module")
def trained():
    return trained_tiny_model(vocab_size=40, steps=20)


def test_cached_decoding_matches_full_forward_for_every_head(model) -> None:
    tokens = torch.tensor([[1, 5, 9, 14, 30, 7, 8, 60]])
    with torch.no_grad():
        full = model(tokens)  # (1, S, F, V)
        cache = KVCache.for_model(model, 1, 16)
        steps = [model(tokens[:, :3], 0, cache)] + [model(tokens[:, i:i + 1], i, cache) for i in range(3, 8)]
    incremental = torch.cat(steps, dim=1)
    assert incremental.shape == full.shape
    assert torch.allclose(incremental, full, rtol=1e-4, atol=1e-4)  # (torch.testing would import dynamo)


def test_kv_cache_rejects_overflow_and_wrong_batch(model) -> None:
    cache = KVCache.for_model(model, 2, 4)
    k = torch.zeros(2, 5, model.args.kv_heads, model.args.head_dim)
    with pytest.raises(ValueError, match="holds 4 positions"):
        cache.update(0, k, k, 0)
    with pytest.raises(ValueError, match="batch is 2"):
        cache.update(0, k[:1, :2], k[:1, :2], 0)


def test_greedy_matches_uncached_reference_batched_and_alone(model) -> None:
    prompts = random_prompts(6, 97, seed=1)
    cfg = SamplingConfig(max_new_tokens=20)
    batched = generate(model, prompts, EOS, PAD, cfg, decode)
    for prompt, out in zip(prompts, batched):
        assert out.tokens == reference_greedy(model, prompt, 20)
        assert generate(model, [prompt], EOS, PAD, cfg, decode)[0].tokens == out.tokens


def test_eos_stop_strings_and_length_finish_sequences(model) -> None:
    prompt = random_prompts(1, 97, seed=2)[0]
    free = generate(model, [prompt], EOS, PAD, SamplingConfig(max_new_tokens=12), decode)[0]
    assert free.finish_reason == "length" and len(free.tokens) == 12
    eos = free.tokens[5]
    first = free.tokens.index(eos)
    ended = generate(model, [prompt], eos, PAD, SamplingConfig(max_new_tokens=12), decode)[0]
    assert ended.finish_reason == "eos" and ended.tokens == free.tokens[:first]
    stop = f"t{free.tokens[4]}"
    stopped = generate(model, [prompt], EOS, PAD, SamplingConfig(max_new_tokens=12, stop=(stop,)), decode)[0]
    assert stopped.finish_reason == "stop" and stop not in stopped.text
    assert decode(free.tokens).startswith(stopped.text)


def test_sampling_is_seeded(model) -> None:
    prompts = [random_prompts(1, 97, seed=3)[0]] * 4
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=15, seed=7)
    first = [g.tokens for g in generate(model, prompts, EOS, PAD, cfg, decode)]
    again = [g.tokens for g in generate(model, prompts, EOS, PAD, cfg, decode)]
    other = [g.tokens for g in generate(model, prompts, EOS, PAD, cfg.model_copy(update={"seed": 8}), decode)]
    assert first == again and first != other
    assert len({tuple(t) for t in first}) > 1  # n samples of one prompt differ


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    gen = torch.Generator().manual_seed(0)
    drawn = sample_next(logits, 1.0, 0.7, gen)
    assert set(drawn.tolist()) == {0, 1}  # 0.5 + 0.3 covers 0.7; tokens 2 and 3 are cut
    assert sample_next(logits[:3], 1.0, 0.01, gen).tolist() == [0, 0, 0]
    assert sample_next(logits[:3], 0.0, 1.0, None).tolist() == [0, 0, 0]


def _assert_speculative_equals_greedy(model, prompts, cfg) -> SpeculativeStats:
    stats = SpeculativeStats()
    plain = generate(model, prompts, EOS, PAD, cfg, decode)
    fast = speculative_generate(model, prompts, EOS, PAD, cfg, decode, stats)
    for a, b in zip(plain, fast):
        assert (a.tokens, a.finish_reason, a.text) == (b.tokens, b.finish_reason, b.text)
    return stats


def test_speculative_equals_greedy_on_random_model(model) -> None:
    prompts = random_prompts(24, 97, seed=4)
    for prompt in prompts[:12]:
        _assert_speculative_equals_greedy(model, [prompt], SamplingConfig(max_new_tokens=25))
    _assert_speculative_equals_greedy(model, prompts[12:], SamplingConfig(max_new_tokens=25))  # padded batch


def test_speculative_equals_greedy_with_accepted_and_rejected_drafts(trained) -> None:
    prompts = random_prompts(24, 40, seed=5)
    totals = SpeculativeStats()
    for prompt in prompts:
        stats = _assert_speculative_equals_greedy(trained, [prompt], SamplingConfig(max_new_tokens=30))
        totals.accepted += stats.accepted
        totals.drafted += stats.drafted
    assert 0 < totals.accepted < totals.drafted  # both paths (accept, reject + roll back) were taken
    batch = _assert_speculative_equals_greedy(trained, prompts, SamplingConfig(max_new_tokens=30))
    assert batch.forwards > 0
    stops = SamplingConfig(max_new_tokens=30, stop=(f"t{rule_next(10, 40)} t{rule_next(rule_next(10, 40), 40)}",))
    _assert_speculative_equals_greedy(trained, prompts[:8] + [[1, 10]], stops)


def test_speculative_equals_greedy_with_eos_inside_accepted_drafts(trained) -> None:
    prompt = [1, 7]
    chain = generate(trained, [prompt], EOS, PAD, SamplingConfig(max_new_tokens=12), decode)[0].tokens
    eos = chain[6]  # an id the model will emit, probably inside an accepted draft run
    stats = SpeculativeStats()
    cfg = SamplingConfig(max_new_tokens=12)
    plain = generate(trained, [prompt], eos, PAD, cfg, decode)[0]
    fast = speculative_generate(trained, [prompt], eos, PAD, cfg, decode, stats)[0]
    assert plain.tokens == fast.tokens == chain[: chain.index(eos)] and fast.finish_reason == "eos"


def test_speculative_is_greedy_only(model) -> None:
    with pytest.raises(ValueError, match="greedy only"):
        speculative_generate(model, [[1, 5]], EOS, PAD, SamplingConfig(temperature=0.8), decode)
