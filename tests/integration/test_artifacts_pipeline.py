"""End to end through the CLI: synthetic base -> convert -> verify -> default micro model (< 50 MB, fp16) -> train."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wmtp_core import paths
from wmtp_core.artifacts.layout import ModelLayout
from wmtp_core.artifacts.micro import write_synthetic_base
from wmtp_core.cli import main
from wmtp_core.model.adapter import MetaLlamaMTPAdapter


@pytest.mark.slow  # ~10-20 s: a 138 MB synthetic base is generated, converted and sliced
def test_synthetic_base_to_default_micro_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tok = paths.CODE_TOKENIZER  # the micro model's 8000-piece vocabulary (shipped in the repo)
    src = write_synthetic_base(tmp_path / "src", tok)
    base, micro = tmp_path / "meta-llama-mtp", tmp_path / "micro-mtp"
    assert main(["convert-checkpoint", "--source", str(src), "--out", str(base)]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert main(["convert-checkpoint", "--source", str(src), "--out", str(base)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["verify-model", str(base), "--fast"]) == 0
    assert main(["build-micro", "--base", str(base), "--out", str(micro), "--tokenizer", str(tok),
                 "--target-device", "cpu"]) == 0
    assert "[SYNTHETIC base]" in capsys.readouterr().out

    layout = ModelLayout(micro)
    assert layout.weights_file.stat().st_size < 50_000_000
    assert {p.name for p in layout.configs_dir.iterdir()} == {"config.json", "params.json", "meta_adapter.yaml"}
    meta = layout.read_metadata()
    assert meta["dtype"] == "float16" and meta["synthetic"] and meta["plan"]["requested"]["dim"] == 512
    assert meta["plan"]["trunk_layers"] == [0, 3] and meta["target_device"] == "cpu"

    adapter = MetaLlamaMTPAdapter.from_pretrained(micro)
    assert (adapter.args.dim, adapter.args.n_heads, adapter.args.n_future_tokens) == (512, 4, 4)
    tokens = torch.tensor([adapter.tokenizer.encode("print(sum(map(int, input().split())))", bos=True)])
    targets = torch.roll(tokens, -1, dims=1).unsqueeze(-1).expand(-1, -1, 4)
    before = adapter.model.output.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(adapter.forward(tokens).flatten(0, 2), targets.flatten())
    loss.backward()
    with torch.no_grad():
        for param in adapter.model.parameters():
            param -= 1e-2 * param.grad
    assert torch.isfinite(loss) and not torch.equal(before, adapter.model.output.weight)


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert-checkpoint", "--source", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "no consolidated.pth" in capsys.readouterr().err
    assert main(["build-micro", "--base", str(tmp_path), "--out", str(tmp_path / "m")]) == 1
    assert "metadata.json missing" in capsys.readouterr().err
