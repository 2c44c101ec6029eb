"""Token-weight heatmap (self-contained HTML) and histograms (PNG, matplotlib Agg) for run artifacts."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wmtp_core.tracking.figures import pyplot, save_png

SPACE_PIECE = "\u2581"  # SentencePiece word-boundary marker
BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")  # byte-fallback piece, e.g. <0x0A> = newline


@dataclass(frozen=True)
class WeightedSample:
    """One sequence: its token pieces and, per token, the weight of that token as a target (None = no loss)."""

    title: str
    pieces: list[str]
    weights: list[float | None]


def _colour(weight: float, vmax: float) -> str:
    """White at weight 1, red above (up to vmax), blue below (down to 0)."""
    if weight >= 1.0:
        t = min((weight - 1.0) / max(vmax - 1.0, 1e-6), 1.0)
        r, g, b = 255, int(255 * (1 - t)), int(255 * (1 - t))
    else:
        t = min(max(1.0 - weight, 0.0), 1.0)
        r, g, b = int(255 * (1 - t)), int(255 * (1 - t)), 255
    return f"rgb({r},{g},{b})"


def _piece_text(piece: str) -> str:
    byte = BYTE_PIECE.match(piece)
    if byte is not None and int(byte[1], 16) < 128:
        piece = chr(int(byte[1], 16))
    return html.escape(piece.replace(SPACE_PIECE, " ")).replace("\n", "&#8629;\n")


def _token_span(piece: str, weight: float | None, vmax: float) -> str:
    text = _piece_text(piece)
    if weight is None or not math.isfinite(weight):
        return f'<span class="ctx">{text}</span>'
    return (f'<span class="tok" style="background:{_colour(weight, vmax)}" '
            f'title="w={weight:.3f}">{text}</span>')


def token_weight_html(samples: Sequence[WeightedSample], heading: str) -> str:
    """HTML page colouring each response token by its weight (hover shows the value); prompt tokens grey."""
    finite = [w for s in samples for w in s.weights if w is not None and math.isfinite(w)]
    vmax = max([2.0, *finite])
    blocks = []
    for sample in samples:
        spans = "".join(_token_span(p, w, vmax) for p, w in zip(sample.pieces, sample.weights, strict=True))
        blocks.append(f"<h3>{html.escape(sample.title)}</h3><pre>{spans}</pre>")
    style = ("body{font-family:sans-serif} pre{white-space:pre-wrap;font-family:monospace;line-height:1.6}"
             ".ctx{color:#999}.tok{border-radius:2px}")
    legend = (f"<p>white = weight 1, red = up to {vmax:.2f}, blue = down to 0; grey = prompt / no loss. "
              f"{len(finite)} weighted tokens.</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(heading)}</title>"
            f"<style>{style}</style></head><body><h2>{html.escape(heading)}</h2>{legend}"
            f"{''.join(blocks)}</body></html>")


def histograms_png(series: dict[str, Sequence[float]], path: Path, title: str) -> Path:
    """One histogram panel per named series, written to `path` (PNG)."""
    plt = pyplot()
    names = [n for n, v in series.items() if len(v)]
    if not names:
        raise ValueError(f"{path}: no values to plot for {title!r}")
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ax.hist(list(series[name]), bins=50, color="#4477aa")
        ax.set_title(f"{name} (n={len(series[name])})")
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)
