"""A self-contained ``report.html``: sample grids and loss curves as base64 PNGs, metric tables, no external files.

Loss curves need matplotlib (the ``plots`` extra); without it the report simply has no curves.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genlab.checkpoint import write_bytes


@dataclass(frozen=True)
class Column:
    """One column of a metric table: a row key, its header, and whether higher is better (None: not ranked)."""

    key: str
    header: str
    higher: bool | None = None


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
td.best{background:#d9f2d9;font-weight:bold}.grid{display:inline-block;margin:.5rem;vertical-align:top}
.grid img{image-rendering:pixelated;border:1px solid #ccc;max-width:360px}
.grid pre{max-width:560px;max-height:360px;overflow:auto;background:#fafafa;border:1px solid #ccc;padding:.4rem;
white-space:pre-wrap}
.note{color:#666;font-size:.9rem}
"""


def png_base64(png: bytes) -> str:
    """An ``<img>``-ready data URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def grid_png(images: Any, nrow: int | None = None) -> bytes:
    """PNG bytes of a grid of ``uint8`` images ``(N, C, H, W)``."""
    from PIL import Image

    from genlab.report.grids import grid

    g = grid(images, nrow)
    buf = io.BytesIO()
    Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g).save(buf, format="PNG")
    return buf.getvalue()


def loss_curves_png(curves: dict[str, list[dict[str, Any]]]) -> bytes | None:
    """PNG of training losses (one panel per loss key, one line per run) from ``metrics.jsonl`` rows, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    keys = sorted({k for rows in curves.values() for r in rows for k in r if k.startswith("loss")})
    if not keys:
        return None
    cols = min(3, len(keys))
    fig, axes = plt.subplots(math.ceil(len(keys) / cols), cols, figsize=(4.2 * cols, 3 * math.ceil(len(keys) / cols)),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for name, rows in curves.items():
            pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=name)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return html.escape(str(v))


def metric_table(rows: dict[str, dict[str, Any]], columns: Sequence[Column]) -> str:
    """An HTML table: one row per run, one column per :class:`Column`; the best number of each ranked column
    (``higher`` set) highlighted.

    Arguments:
        rows: ``run name → {key: value}``.
        columns: the columns to show.
    """
    best: dict[str, float] = {}
    for col in columns:
        vals = [v for r in rows.values() if isinstance(v := r.get(col.key), int | float) and not isinstance(v, bool)
                and math.isfinite(v)]
        if len(vals) > 1 and col.higher is not None:
            best[col.key] = max(vals) if col.higher else min(vals)
    head = "<tr><th>run</th>" + "".join(f"<th>{html.escape(c.header)}</th>" for c in columns) + "</tr>"
    body = []
    for name, r in rows.items():
        cells = []
        for col in columns:
            v = r.get(col.key)
            mark = ' class="best"' if col.key in best and isinstance(v, int | float) and v == best[col.key] else ""
            cells.append(f"<td{mark}>{_fmt(v)}</td>")
        body.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def render(title: str, sections: Sequence[tuple[str, str]], subtitle: str = "") -> str:
    """A complete HTML page from ``(heading, html body)`` sections."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f"<p class='note'>{html.escape(subtitle)}</p>")
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    parts.append("</body></html>")
    return "\n".join(parts)


def image_block(caption: str, png: bytes) -> str:
    """A captioned inline image."""
    return (f"<div class='grid'><div>{html.escape(caption)}</div>"
            f"<img alt='{html.escape(caption)}' src='{png_base64(png)}'></div>")


def media_block(caption: str, mime: str, data: bytes) -> str:
    """A captioned rendering of ``(mime, bytes)``: an inline image, an audio player, or preformatted text."""
    major = mime.split("/", 1)[0]
    uri = f"data:{mime.split(';')[0]};base64," + base64.b64encode(data).decode("ascii")
    if major == "image":
        return (f"<div class='grid'><div>{html.escape(caption)}</div>"
                f"<img alt='{html.escape(caption)}' src='{uri}'></div>")
    if major == "audio":
        return f"<div class='grid'><div>{html.escape(caption)}</div><audio controls src='{uri}'></audio></div>"
    text = data.decode("utf-8", errors="replace")
    return f"<div class='grid'><div>{html.escape(caption)}</div><pre>{html.escape(text)}</pre></div>"


def pairs_png(samples: Any, train: Any, closest: list[dict[str, Any]]) -> bytes:
    """Grid of the closest (sample, nearest training image) pairs: top row samples, bottom row training images."""
    import torch

    s = torch.stack([torch.as_tensor(samples[c["sample"]]) for c in closest])
    t = torch.stack([torch.as_tensor(train[c["train"]]) for c in closest])
    return grid_png(torch.cat([s, t]).numpy().astype(np.uint8), nrow=len(closest))


def write_report(path: str | Path, page: str) -> Path:
    """Write the page atomically; returns the path."""
    write_bytes(path, page.encode("utf-8"))
    return Path(path)
