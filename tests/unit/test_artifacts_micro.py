"""Micro model slicing: weights come from the base as planned, vocab rows are mapped, metadata records the plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures.models import small_tokenizer, tiny_model_dir
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core.artifacts.errors import ArtifactError, ArtifactExists
from wmtp_core.artifacts.layout import ModelLayout
from wmtp_core.artifacts.micro import MicroPlan, build_micro_model, choose_trunk_layers
from wmtp_core.io import sha256_file
from wmtp_core.model.adapter import MetaLlamaMTPAdapter

PLAN = MicroPlan(dim=32, ffn_hidden_dim=64, max_seq_len=256, target_device="cpu")


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tiny_model_dir(tmp_path, tokenizer_model=small_tokenizer("code"), name="base")


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ModelLayout(model_dir).weights_file))


def test_blocks_are_sliced_from_the_planned_base_blocks(base: Path, tmp_path: Path) -> None:
    result = build_micro_model(base, tmp_path / "micro", tokenizer_model=small_tokenizer("prose"), plan=PLAN)
    b, m = _weights(base), _weights(result.out_dir)
    # base: 2 trunk blocks (layers.0-1), head 0 = layers.2; micro keeps both trunk blocks and all 4 heads
    assert torch.equal(m["layers.0.attention.wq.weight"], b["layers.0.attention.wq.weight"][:32, :32])
    assert torch.equal(m["layers.1.attention.wk.weight"], b["layers.1.attention.wk.weight"][:16, :32])
    assert torch.equal(m["layers.2.attention.wo.weight"], b["layers.2.attention.wo.weight"][:32, :32])
    assert torch.equal(m["extra_heads.2.feed_forward.w2.weight"], b["extra_heads.2.feed_forward.w2.weight"][:32, :64])
    assert torch.equal(m["extra_heads.0.ffn_norm.weight"], b["extra_heads.0.ffn_norm.weight"][:32])
    assert torch.equal(m["norm.weight"], b["norm.weight"][:32])
    assert {t.dtype for t in m.values()} == {torch.float16}


def test_vocab_rows_copied_for_shared_pieces_and_initialised_otherwise(base: Path, tmp_path: Path) -> None:
    micro_tok, base_tok = Tokenizer(small_tokenizer("prose")), Tokenizer(small_tokenizer("code"))
    result = build_micro_model(base, tmp_path / "micro", tokenizer_model=micro_tok.model_path, plan=PLAN)
    b, m = _weights(base), _weights(result.out_dir)
    base_ids = {p: i for i, p in enumerate(base_tok.pieces())}
    shared = [(i, base_ids[p]) for i, p in enumerate(micro_tok.pieces()) if p in base_ids]
    fresh = [i for i, p in enumerate(micro_tok.pieces()) if p not in base_ids]
    assert shared and fresh
    for mid, bid in shared:
        assert torch.equal(m["tok_embeddings.weight"][mid], b["tok_embeddings.weight"][bid, :32])
        assert torch.equal(m["output.weight"][mid], b["output.weight"][bid, :32])
    assert m["tok_embeddings.weight"].shape == (micro_tok.n_words, 32)
    assert torch.isfinite(m["tok_embeddings.weight"][fresh].float()).all()
    assert m["tok_embeddings.weight"][fresh].float().std() > 0
    plan = result.metadata["plan"]
    assert plan["vocab_copied"] == len(shared) and plan["vocab_initialised"] == len(fresh)


def test_metadata_records_plan_lineage_and_device(base: Path, tmp_path: Path) -> None:
    result = build_micro_model(base, tmp_path / "micro", tokenizer_model=small_tokenizer("prose"), plan=PLAN)
    meta = ModelLayout(result.out_dir).read_metadata()
    assert meta["kind"] == "micro" and meta["synthetic"] is True and meta["dtype"] == "float16"
    assert meta["target_device"] == "cpu"
    assert meta["derived_from"]["metadata_sha256"] == sha256_file(ModelLayout(base).metadata_json)
    assert meta["plan"]["trunk_layers"] == [0, 1] and meta["plan"]["query_heads"] == [0, 1]
    assert meta["plan"]["kv_heads"] == [0] and meta["plan"]["head_dim"] == 16
    assert meta["plan"]["requested"] == PLAN.model_dump()
    assert "synthetic base" in meta["source"]["description"]


def test_micro_loads_and_trains_a_step(base: Path, tmp_path: Path) -> None:
    out = build_micro_model(base, tmp_path / "micro", tokenizer_model=small_tokenizer("prose"), plan=PLAN).out_dir
    adapter = MetaLlamaMTPAdapter.from_pretrained(out)
    assert adapter.args.n_heads == 2 and adapter.args.kv_heads == 1 and adapter.args.ffn_hidden_dim == 64
    tokens = torch.tensor([adapter.tokenizer.encode("def add(a, b): return a + b", bos=True)])
    logits = adapter.forward(tokens)  # (1, S, 4, V)
    assert logits.shape[2:] == (4, adapter.tokenizer.n_words)
    loss = logits.float().logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None for p in adapter.model.parameters())


def test_rerun_is_noop_and_other_plan_needs_force(base: Path, tmp_path: Path) -> None:
    tok = small_tokenizer("prose")
    build_micro_model(base, tmp_path / "micro", tokenizer_model=tok, plan=PLAN)
    again = build_micro_model(base, tmp_path / "micro", tokenizer_model=tok, plan=PLAN)
    assert again.skipped and "nothing to do" in again.message
    other = PLAN.model_copy(update={"seed": 5})
    with pytest.raises(ArtifactExists, match="different micro model"):
        build_micro_model(base, tmp_path / "micro", tokenizer_model=tok, plan=other)
    assert not build_micro_model(base, tmp_path / "micro", tokenizer_model=tok, plan=other, force=True).skipped


def test_plans_that_do_not_fit_the_base_are_explained(base: Path, tmp_path: Path) -> None:
    tok = small_tokenizer("prose")
    with pytest.raises(ArtifactError, match=r"dim 512 must be <= base dim 64.*ffn_hidden_dim 1024 exceeds"):
        build_micro_model(base, tmp_path / "m", tokenizer_model=tok, plan=MicroPlan())
    with pytest.raises(ArtifactError, match=r"n_trunk_layers 3 must be in \[2, 2\]"):
        build_micro_model(base, tmp_path / "m", tokenizer_model=tok, plan=PLAN.model_copy(update={"n_trunk_layers": 3}))
    with pytest.raises(ArtifactError, match="over max_file_bytes"):
        build_micro_model(base, tmp_path / "m", tokenizer_model=tok,
                          plan=PLAN.model_copy(update={"max_file_bytes": 10_000}))
    assert not (tmp_path / "m").exists()


def test_trunk_layer_choice_keeps_first_and_last() -> None:
    assert choose_trunk_layers(MicroPlan(n_trunk_layers=2), 28) == [0, 27]
    assert choose_trunk_layers(MicroPlan(n_trunk_layers=3), 28) == [0, 14, 27]
    with pytest.raises(ArtifactError, match="increasing ids"):
        choose_trunk_layers(MicroPlan(n_trunk_layers=2, trunk_layers=[5, 2]), 28)


def test_plan_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        MicroPlan(width=3)
