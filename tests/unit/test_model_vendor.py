"""vendor/meta_llama/model.py: Meta key layout, dims, GQA, causality, RoPE convention, dtypes, checkpointing."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.fixtures.models import assert_close
from vendor.meta_llama.model import (
    ROPE_FREQS_KEY,
    ModelArgs,
    Transformer,
    apply_rope,
    expected_shapes,
    load_meta_state_dict,
    rope_tables,
)
from wmtp_core.artifacts.synthetic import synthetic_state_dict, tiny_args

VOCAB = 97


def _model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_args(VOCAB, **overrides))


def _tokens(batch: int = 2, seq: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_state_dict_keys_and_shapes_equal_expected_meta_layout() -> None:
    args = tiny_args(VOCAB)
    model = Transformer(args)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected_shapes(args)
    assert list(got) == list(expected_shapes(args))  # same order too
    # n_layers 6, n_future 4: `layers` = 2 shared trunk blocks + head 0, `extra_heads` = heads 1..3
    assert "layers.2.attention.wq.weight" in got and "layers.3.attention.wq.weight" not in got
    assert [k for k in got if k.startswith("extra_heads.") and k.endswith("wo.weight")] == [
        f"extra_heads.{j}.attention.wo.weight" for j in range(3)]


def test_state_dict_keys_equal_a_synthetic_meta_checkpoint() -> None:
    args = tiny_args(VOCAB)
    meta = synthetic_state_dict(args, include_rope_freqs=True)
    model_keys = set(Transformer(args).state_dict())
    assert set(meta) - model_keys == {ROPE_FREQS_KEY}
    assert model_keys == set(meta) - {ROPE_FREQS_KEY}


def test_seven_b_dims_match_meta() -> None:
    args = ModelArgs(dim=4096, n_layers=32, n_heads=32, vocab_size=32000, multiple_of=256, n_future_tokens=4)
    assert args.ffn_hidden_dim == 11008
    shapes = expected_shapes(args)
    assert shapes["layers.0.feed_forward.w1.weight"] == (11008, 4096)
    assert shapes["layers.28.feed_forward.w2.weight"] == (4096, 11008)
    assert "layers.29.attention.wq.weight" not in shapes
    assert "extra_heads.2.ffn_norm.weight" in shapes and "extra_heads.3.ffn_norm.weight" not in shapes
    total = sum(torch.Size(s).numel() for s in shapes.values())
    assert 6.7e9 < total < 6.8e9  # 7B_1T_4: 32 blocks + embeddings + untied output


def test_forward_shape_and_heads_match_head_logits() -> None:
    model = _model().eval()
    tokens = _tokens()
    logits = model(tokens)
    assert logits.shape == (2, 7, 4, VOCAB)
    trunk = model.trunk_forward(tokens)
    for k in range(4):
        assert_close(model.head_logits(trunk, k), logits[:, :, k])
    assert_close(model(tokens, n_heads=1)[:, :, 0], logits[:, :, 0])
    with pytest.raises(IndexError):
        model.head_block(4)


def test_backward_reaches_every_parameter() -> None:
    model = _model()
    tokens = _tokens()
    logits = model(tokens)  # (B, S, F, V)
    targets = _tokens(seed=5).unsqueeze(-1).expand(-1, -1, 4)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten())
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_changing_a_future_token_leaves_earlier_logits_unchanged() -> None:
    model = _model().eval()
    tokens = _tokens(batch=1, seq=9)
    changed = tokens.clone()
    changed[0, 5] = (changed[0, 5] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_rope_rotates_adjacent_pairs_like_complex_multiplication() -> None:
    head_dim, theta = 8, 10000.0
    x = torch.randn(1, 5, 2, head_dim)
    cos, sin = rope_tables(head_dim, 3, 5, theta, torch.device("cpu"))
    got = apply_rope(x, cos, sin)
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(3, 8).float(), freqs)  # positions 3..7
    rot = torch.polar(torch.ones_like(angles), angles)[None, :, None, :]
    expected = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * rot).flatten(-2)
    assert_close(got, expected)
    only_first_pair = torch.zeros(1, 1, 1, head_dim)
    only_first_pair[..., 0] = 1.0
    cos1, sin1 = rope_tables(head_dim, 2, 1, theta, torch.device("cpu"))
    out = apply_rope(only_first_pair, cos1, sin1)[0, 0, 0]
    assert_close(out[:2], torch.tensor([torch.cos(torch.tensor(2.0)), torch.sin(torch.tensor(2.0))]))
    assert torch.all(out[2:] == 0)


def test_rope_scores_depend_only_on_relative_position() -> None:
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    def score(pq: int, pk: int) -> torch.Tensor:
        cq, sq = rope_tables(16, pq, 1, 10000.0, torch.device("cpu"))
        ck, sk = rope_tables(16, pk, 1, 10000.0, torch.device("cpu"))
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum()
    assert_close(score(7, 3), score(14, 10))


def test_gqa_equals_mha_with_repeated_kv_heads() -> None:
    gqa = _model().eval()  # 4 query heads, 2 kv heads
    mha = Transformer(tiny_args(VOCAB, n_kv_heads=4)).eval()
    hd = gqa.args.head_dim
    state = {}
    for key, value in gqa.state_dict().items():
        if key.endswith(("attention.wk.weight", "attention.wv.weight")):
            value = value.view(2, hd, -1).repeat_interleave(2, dim=0).reshape(4 * hd, -1)  # query head h -> kv h//2
        state[key] = value
    mha.load_state_dict(state)
    tokens = _tokens()
    with torch.no_grad():
        assert_close(gqa(tokens), mha(tokens), rtol=1e-5, atol=1e-5)


def test_rope_freqs_is_tolerated_and_reported_other_extras_are_not() -> None:
    args = tiny_args(VOCAB)
    model = Transformer(args)
    state = synthetic_state_dict(args, dtype=torch.float32, include_rope_freqs=True)
    assert load_meta_state_dict(model, state) == [ROPE_FREQS_KEY]
    assert_close(model.norm.weight, state["norm.weight"])
    state["unknown.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="unknown.weight"):
        load_meta_state_dict(model, state)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_forward_is_finite_and_close_to_fp32(dtype: torch.dtype) -> None:
    model = _model().eval()
    tokens = _tokens()
    with torch.no_grad():
        ref = model(tokens)
        low = model.to(dtype)(tokens)
    assert low.dtype == dtype
    assert torch.isfinite(low).all()
    assert_close(low.float(), ref, rtol=0.05, atol=0.05)


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    tokens = _tokens()
    grads = []
    for use_ckpt in (False, True):
        model = _model(seed=3).train()
        model.checkpoint_trunk = use_ckpt
        model(tokens).float().pow(2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_model_args_reject_inconsistent_dims() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ModelArgs(dim=65, n_heads=4)
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModelArgs(dim=64, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="n_future_tokens"):
        replace(tiny_args(VOCAB), n_future_tokens=0)
