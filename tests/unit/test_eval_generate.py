"""KV-cache decoding, sampling controls and self-speculative decoding on tiny random / briefly trained models."""

from __future__ import annotations

import random

import pytest
import torch

from tests.fixtures.eval import permutation_model, rule_next, tiny_model, trained_tiny_model
from vendor.meta_llama.generation import KVCache
from wmtp_core.eval.generate import SamplingConfig, generate, sample_next
from wmtp_core.eval.speculative import SpeculativeConfig, SpeculativeStats, speculative_generate

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


FIXED = [SpeculativeConfig(draft_len=k, adaptive=False) for k in (1, 2, 3)]


def _assert_speculative_equals_greedy(model, prompts, cfg, spec=None, eos=EOS) -> SpeculativeStats:
    """Speculative output == plain cached greedy == (per prompt) the uncached reference loop."""
    stats = SpeculativeStats()
    plain = generate(model, prompts, eos, PAD, cfg, decode)
    fast = speculative_generate(model, prompts, eos, PAD, cfg, decode, stats, spec)
    for prompt, a, b in zip(prompts, plain, fast):
        assert (a.tokens, a.finish_reason, a.text) == (b.tokens, b.finish_reason, b.text)
        if len(prompts) == 1 and not cfg.stop:  # the uncached loop is slow: single prompts only
            assert b.tokens == reference_greedy(model, prompt, cfg.max_new_tokens, eos)
    assert stats.tokens_per_forward >= 1.0
    return stats


@pytest.mark.parametrize("spec", [None, *FIXED], ids=["adaptive", "k1", "k2", "k3"])
def test_speculative_equals_greedy_on_random_model(model, spec) -> None:
    prompts = random_prompts(16, 97, seed=4)
    for prompt in prompts[:4]:
        _assert_speculative_equals_greedy(model, [prompt], SamplingConfig(max_new_tokens=25), spec)
    _assert_speculative_equals_greedy(model, prompts[4:], SamplingConfig(max_new_tokens=25), spec)  # padded batch


@pytest.mark.parametrize("spec", [None, *FIXED], ids=["adaptive", "k1", "k2", "k3"])
def test_speculative_equals_greedy_with_accepted_and_rejected_drafts(trained, spec) -> None:
    prompts = random_prompts(12, 40, seed=5)
    drafted = accepted = 0
    for prompt in prompts[:6]:
        stats = _assert_speculative_equals_greedy(trained, [prompt], SamplingConfig(max_new_tokens=30), spec)
        drafted, accepted = drafted + sum(stats.drafted), accepted + sum(stats.accepted)
    assert 0 < accepted < drafted  # both paths (accept, reject + roll back) were taken
    batch = _assert_speculative_equals_greedy(trained, prompts, SamplingConfig(max_new_tokens=30), spec)
    assert batch.uneven_steps > 0  # rows accepted different numbers of drafts: holes in the batch's cache
    stops = SamplingConfig(max_new_tokens=30, stop=(f"t{rule_next(10, 40)} t{rule_next(rule_next(10, 40), 40)}",))
    _assert_speculative_equals_greedy(trained, prompts[:8] + [[1, 10]], stops, spec)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_full_acceptance_emits_draft_len_plus_one_tokens_per_forward(k) -> None:
    model = permutation_model(vocab_size=16)
    spec, cfg = SpeculativeConfig(draft_len=k, adaptive=False), SamplingConfig(max_new_tokens=40)
    prompts = random_prompts(6, 16, seed=6, max_len=5)
    for prompt in prompts[:2]:
        stats = _assert_speculative_equals_greedy(model, [prompt], cfg, spec)
        steps = -(-(40 - 1) // (k + 1))  # prefill emits one token, every later forward k + 1
        assert stats.forwards == 1 + steps
        assert stats.head_acceptance() == {f"head{j}": 1.0 for j in range(1, k + 1)}
    _assert_speculative_equals_greedy(model, prompts, cfg, spec)


def test_partial_acceptance_differs_per_row_and_matches_greedy() -> None:
    model = permutation_model(vocab_size=16, wrong_every=3)  # heads 2 and 3 wrong on every third token
    prompts = random_prompts(8, 16, seed=7, max_len=6)
    for spec in [None, *FIXED[1:]]:
        stats = _assert_speculative_equals_greedy(model, prompts, SamplingConfig(max_new_tokens=40), spec)
        rates = stats.head_acceptance()
        assert stats.uneven_steps > 0 and rates["head1"] == 1.0 and 0.0 < rates["head2"] < 1.0


def test_adaptive_drafting_backs_off_at_zero_acceptance() -> None:
    model = permutation_model(vocab_size=16, wrong_every=1)  # every draft wrong
    prompt, cfg = [1, 5, 9], SamplingConfig(max_new_tokens=120)
    fixed = _assert_speculative_equals_greedy(model, [prompt], cfg, FIXED[2])
    adaptive = _assert_speculative_equals_greedy(model, [prompt], cfg)
    assert sum(fixed.accepted) == sum(adaptive.accepted) == 0
    assert sum(fixed.drafted) == 3 * (120 - 1) and fixed.tokens_per_forward == 1.0
    assert sum(adaptive.drafted) < 40  # a few steps at 3 drafts, then single-draft probes at growing intervals


def test_speculative_with_eos_inside_accepted_drafts(trained) -> None:
    prompt = [1, 7]
    chain = generate(trained, [prompt], EOS, PAD, SamplingConfig(max_new_tokens=12), decode)[0].tokens
    eos = chain[6]  # an id the model will emit, probably inside an accepted draft run
    for spec in [None, *FIXED]:
        fast = speculative_generate(trained, [prompt], eos, PAD, SamplingConfig(max_new_tokens=12), decode,
                                    spec=spec)[0]
        assert fast.tokens == chain[: chain.index(eos)] and fast.finish_reason == "eos"


def test_speculative_rejects_sampling_and_bad_draft_lengths(model) -> None:
    with pytest.raises(ValueError, match="greedy only"):
        speculative_generate(model, [[1, 5]], EOS, PAD, SamplingConfig(temperature=0.8), decode)
    with pytest.raises(ValueError, match="draft_len=4 exceeds"):
        speculative_generate(model, [[1, 5]], EOS, PAD, SamplingConfig(), decode, spec=SpeculativeConfig(draft_len=4))
    with pytest.raises(ValueError, match="needs a model with extra heads"):
        speculative_generate(tiny_model(n_future=1, n_layers=3), [[1, 5]], EOS, PAD, SamplingConfig(), decode)
