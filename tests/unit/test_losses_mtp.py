"""Weighted MTP loss: reference equality, sequential == naive gradients, global normalisation, chunked CE."""

from __future__ import annotations

import pytest
import torch
from fixtures.science import ragged_batch, reference_mtp_loss, tiny_transformer

from wmtp_core.losses import count_valid_labels, linear_ce, target_weights, weighted_mtp_loss
from wmtp_core.losses.linear_ce import weighted_linear_ce


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _run(model, batch, w, denom, coefs, impl, chunk_size=7):
    model.zero_grad(set_to_none=True)
    trunk = model.trunk_forward(batch["input_ids"])
    out = weighted_mtp_loss(model, trunk, batch["labels"], w, denom, coefs, impl=impl, chunk_size=chunk_size)
    out.backward()
    return out, _grads(model)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def test_target_weights_shift() -> None:
    w = torch.arange(1, 6, dtype=torch.float32)[None]  # (1, 5)
    out = target_weights(w, 3)
    assert out[0, :, 0].tolist() == [2, 3, 4, 5, 0]
    assert out[0, :, 1].tolist() == [3, 4, 5, 0, 0]
    assert out[0, :, 2].tolist() == [4, 5, 0, 0, 0]


def test_count_valid_labels() -> None:
    labels = torch.tensor([[[1, -100], [-100, -100], [3, 4]]])
    assert int(count_valid_labels(labels)) == 3


@pytest.mark.parametrize("impl", ["naive", "sequential"])
def test_loss_matches_plain_loop_reference(impl: str) -> None:
    model = tiny_transformer(n_future=3)
    batch = ragged_batch(3, 12, 3, seed=1)
    w = torch.rand(3, 12, generator=torch.Generator().manual_seed(5)) * 2
    coefs = [1.0, 0.5, 0.25]
    denom = float(count_valid_labels(batch["labels"]))
    out = weighted_mtp_loss(model, model.trunk_forward(batch["input_ids"]), batch["labels"], w, denom, coefs,
                            impl=impl, chunk_size=5)
    ref = reference_mtp_loss(model, batch["input_ids"], batch["labels"], w, denom, coefs)
    assert torch.allclose(out.loss.detach(), ref.detach(), rtol=1e-5, atol=1e-6)
    loss, metrics = out  # contract: unpacks as (loss, metrics)
    assert {"ce_head0", "ce_head1", "ce_head2", "wce_head2", "loss"} <= set(metrics)


@pytest.mark.parametrize("weighted", [False, True])
def test_sequential_gradients_equal_naive_all_heads(weighted: bool) -> None:
    model = tiny_transformer(n_future=4)
    batch = ragged_batch(4, 16, 4, seed=2)
    w = torch.rand(4, 16, generator=torch.Generator().manual_seed(3)) * 3 if weighted else torch.ones(4, 16)
    coefs = [1.0, 0.7, 0.5, 0.3]
    denom = count_valid_labels(batch["labels"])
    naive, g_naive = _run(model, batch, w, denom, coefs, "naive")
    seq, g_seq = _run(model, batch, w, denom, coefs, "sequential")
    assert torch.allclose(naive.loss.detach(), seq.loss, rtol=1e-6)
    assert set(g_naive) == set(g_seq)
    # every head block, the shared norm/output and the trunk received a gradient
    assert {"extra_heads.2.attention.wq.weight", "layers.2.feed_forward.w1.weight", "output.weight",
            "norm.weight", "tok_embeddings.weight", "layers.0.attention.wo.weight"} <= set(g_seq)
    for name in g_naive:
        assert _rel(g_seq[name], g_naive[name]) <= 1e-5, name
    assert torch.allclose(naive.head_ce, seq.head_ce, atol=1e-5)
    for key in naive.metrics:
        assert torch.allclose(naive.metrics[key], seq.metrics[key], rtol=1e-5, atol=1e-6), key


@pytest.mark.parametrize("impl", ["naive", "sequential"])
def test_batch_of_8_equals_two_accumulated_micro_batches_of_4(impl: str) -> None:
    model = tiny_transformer(n_future=3)
    batch = ragged_batch(8, 14, 3, seed=4)
    w = torch.rand(8, 14, generator=torch.Generator().manual_seed(6)) * 2
    denom = count_valid_labels(batch["labels"])  # global over both micro-batches
    full, g_full = _run(model, batch, w, denom, None, impl)
    model.zero_grad(set_to_none=True)
    total = 0.0
    for half in (slice(0, 4), slice(4, 8)):
        micro = {k: v[half] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        out = weighted_mtp_loss(model, model.trunk_forward(micro["input_ids"]), micro["labels"], w[half],
                                denom, None, impl=impl, chunk_size=7)
        out.backward()
        total += float(out.loss.detach())
    g_acc = _grads(model)
    full_loss = float(full.loss.detach())
    assert abs(total - full_loss) <= 1e-5 * abs(full_loss)
    for name in g_full:
        assert _rel(g_acc[name], g_full[name]) <= 1e-5, name


def test_weight_callable_receives_detached_next_token_ce() -> None:
    model = tiny_transformer(n_future=2)
    batch = ragged_batch(2, 10, 2, seed=7)
    seen: list[torch.Tensor] = []

    def weight_fn(ce: torch.Tensor):
        seen.append(ce)
        return torch.ones_like(ce), {"probe": ce.sum()}

    for impl in ("naive", "sequential"):
        out = weighted_mtp_loss(model, model.trunk_forward(batch["input_ids"]), batch["labels"], weight_fn,
                                1.0, None, impl=impl)
        assert "probe" in out.metrics
    assert not seen[0].requires_grad and not seen[1].requires_grad
    assert torch.allclose(seen[0], seen[1], atol=1e-5)
    assert torch.equal(seen[0] != 0, batch["labels"][..., 0] != -100)


def test_sequential_without_grad_returns_value_only() -> None:
    model = tiny_transformer(n_future=2)
    batch = ragged_batch(2, 10, 2, seed=8)
    with torch.no_grad():
        trunk = model.trunk_forward(batch["input_ids"])
        seq = weighted_mtp_loss(model, trunk, batch["labels"], torch.ones(2, 10), 5.0, impl="sequential")
        naive = weighted_mtp_loss(model, trunk, batch["labels"], torch.ones(2, 10), 5.0, impl="naive")
    assert seq.trunk_grad is None and torch.allclose(seq.loss, naive.loss, rtol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def _ce_case(seed: int):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(23, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 11, (23,), generator=gen)
    labels[::4] = -100
    scale = torch.rand(23, generator=gen, dtype=torch.float64)
    return hidden, weight, labels, scale


def _grads_of(loss: torch.Tensor, *leaves: torch.Tensor) -> list[torch.Tensor]:
    for leaf in leaves:
        leaf.grad = None
    loss.backward()
    return [leaf.grad.clone() for leaf in leaves]


def test_linear_ce_matches_cross_entropy_and_gradients() -> None:
    hidden, weight, labels, scale = _ce_case(0)
    ref = torch.nn.functional.cross_entropy(hidden @ weight.t(), labels, reduction="none")
    ref_grads = _grads_of((ref * scale).sum(), hidden, weight)
    ce = linear_ce(hidden, weight, labels, 5)
    assert torch.allclose(ce.detach(), ref.detach(), atol=1e-12)
    for got, want in zip(_grads_of((ce * scale).sum(), hidden, weight), ref_grads):
        assert torch.allclose(got, want, atol=1e-12)
    with pytest.raises(ValueError, match="chunk_size"):
        linear_ce(hidden, weight, labels, 0)


def test_rejects_bad_impl_and_coefs() -> None:
    model = tiny_transformer(n_future=2)
    batch = ragged_batch(1, 8, 2)
    trunk = model.trunk_forward(batch["input_ids"])
    with pytest.raises(ValueError, match="impl"):
        weighted_mtp_loss(model, trunk, batch["labels"], torch.ones(1, 8), 1.0, impl="fast")  # type: ignore
    with pytest.raises(ValueError, match="head_coefs"):
        weighted_mtp_loss(model, trunk, batch["labels"], torch.ones(1, 8), 1.0, [1.0])


def test_sequential_gradients_equal_naive_with_callable_weights() -> None:
    model = tiny_transformer(n_future=3)
    batch = ragged_batch(3, 15, 3, seed=12)

    def weight_fn(ce: torch.Tensor):  # weights that depend on this forward's next-token CE (like Rho-1)
        w = torch.zeros_like(ce)
        w[:, 1:] = 1.0 + ce[:, :-1]
        return w, {}

    denom = count_valid_labels(batch["labels"])
    naive, g_naive = _run(model, batch, weight_fn, denom, [1.0, 0.5, 0.5], "naive")
    seq, g_seq = _run(model, batch, weight_fn, denom, [1.0, 0.5, 0.5], "sequential")
    assert torch.allclose(naive.weights, seq.weights, atol=1e-5)
    assert torch.allclose(naive.loss.detach(), seq.loss, rtol=1e-6)
    for name in g_naive:
        assert _rel(g_seq[name], g_naive[name]) <= 1e-5, name


def test_weighted_linear_ce_gradients() -> None:
    hidden, weight, labels, scale = _ce_case(1)
    ref = torch.nn.functional.cross_entropy(hidden @ weight.t(), labels, reduction="none")
    ref_grads = _grads_of((ref * scale).sum() * 3.0, hidden, weight)
    loss, ce = weighted_linear_ce(hidden, weight, labels, scale, 4)
    assert not ce.requires_grad and torch.allclose(ce, ref.detach(), atol=1e-12)
    assert loss.item() == pytest.approx(float((ref * scale).sum().detach()))
    for got, want in zip(_grads_of(loss * 3.0, hidden, weight), ref_grads):  # upstream grad is honoured
        assert torch.allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("mode", ["autocast", "bf16_params"])
def test_sequential_matches_naive_in_bf16(mode: str) -> None:
    dtype = torch.bfloat16 if mode == "bf16_params" else torch.float32
    model = tiny_transformer(n_future=2, dtype=dtype)
    batch = ragged_batch(2, 12, 2, seed=13)
    w = torch.rand(2, 12, generator=torch.Generator().manual_seed(2)) + 0.5
    denom = count_valid_labels(batch["labels"])
    results = []
    for impl in ("naive", "sequential"):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            results.append(_run(model, batch, w, denom, None, impl))
    (naive, g_naive), (seq, g_seq) = results
    assert torch.allclose(naive.loss.detach().float(), seq.loss.float(), rtol=2e-2)
    for name in g_naive:
        assert _rel(g_seq[name].float(), g_naive[name].float()) <= 5e-2, name


@pytest.mark.parametrize("kind", ["tensor", "callable"])
def test_zero_weight_tokens_skip_gradient_work_but_keep_loss_grads_and_ce(kind: str, monkeypatch) -> None:
    """Rho-1 top-k zeroes ~40% of the weights: those rows get a forward-only CE (for the metrics), no gradient
    matmuls, and loss, gradients and per-head CE still equal the naive full-logits loss."""
    import wmtp_core.losses.mtp as mtp

    model = tiny_transformer(n_future=3)
    batch = ragged_batch(3, 15, 3, seed=13)
    gen = torch.Generator().manual_seed(2)
    w0 = (torch.rand(3, 15, generator=gen) > 0.4).float() * 2.5  # about 60% selected, weight N/k-like
    weights = w0 if kind == "tensor" else (lambda ce: (w0 * (ce.sum() * 0 + 1), {}))
    fused_rows: list[int] = []
    real = mtp.weighted_linear_ce
    monkeypatch.setattr(mtp, "weighted_linear_ce",
                        lambda h, *a, **k: (fused_rows.append(h.shape[0]), real(h, *a, **k))[1])
    denom = count_valid_labels(batch["labels"])
    naive, g_naive = _run(model, batch, weights, denom, [1.0, 0.5, 0.5], "naive")
    seq, g_seq = _run(model, batch, weights, denom, [1.0, 0.5, 0.5], "sequential")
    assert torch.allclose(naive.loss.detach(), seq.loss, rtol=1e-6)
    assert torch.allclose(naive.head_ce, seq.head_ce, atol=1e-5)  # every labelled token's CE, selected or not
    for name in g_naive:
        assert _rel(g_seq[name], g_naive[name]) <= 1e-5, name
    wt = target_weights(w0, 3)
    live = [int(((batch["labels"][..., k] != -100) & (wt[..., k] != 0)).sum()) for k in range(3)]
    assert fused_rows == live  # gradient work only on labelled rows with a non-zero weight


@pytest.mark.parametrize("impl", ["naive", "sequential"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_head_reduction_matches_per_head_reference(impl: str, reduction: str) -> None:
    """sum: the MTP paper's sum over heads of each head's weighted CE per predicting position; mean: that / F."""
    model = tiny_transformer(n_future=3)
    batch = ragged_batch(3, 12, 3, seed=11)
    w = torch.rand(3, 12, generator=torch.Generator().manual_seed(2)) * 2
    labels = batch["labels"]
    positions = int((labels[..., 0] != -100).sum())  # D: positions with a next-token label
    logits = model(batch["input_ids"], n_heads=3)  # (B, S, F, V): the plain model forward
    per_head = []
    for k in range(3):
        total = torch.zeros(())
        for b in range(3):
            for t in range(12):
                label = int(labels[b, t, k])
                if label != -100:
                    total = total - w[b, t + k + 1] * torch.log_softmax(logits[b, t, k].float(), -1)[label]
        per_head.append(total / positions)
    ref = sum(per_head) if reduction == "sum" else sum(per_head) / 3
    model.zero_grad(set_to_none=True)
    ref.backward()
    ref_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    out = weighted_mtp_loss(model, model.trunk_forward(batch["input_ids"]), labels, w,
                            count_valid_labels(labels[..., 0]), impl=impl, chunk_size=5, head_reduction=reduction)
    out.backward()
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    got = _grads(model)
    assert set(got) == set(ref_grads)
    assert max(_rel(got[n], ref_grads[n]) for n in ref_grads) < 1e-4
    with pytest.raises(ValueError, match="head_reduction"):
        weighted_mtp_loss(model, model.trunk_forward(batch["input_ids"]), labels, w, 1.0,
                          head_reduction="max")  # type: ignore[arg-type]
