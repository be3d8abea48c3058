"""The self-contained HTML report pieces."""

from __future__ import annotations

import base64

import torch

from genlab.report import html as H


def test_metric_table_highlights_best_per_column():
    rows = {"a": {"fid": 3.0, "recall": 0.5}, "b": {"fid": 1.0, "recall": 0.7}, "c": {"fid": None, "recall": 0.6}}
    t = H.metric_table(rows, [H.Column("fid", "FID", False), H.Column("recall", "recall", True)])
    assert t.count('class="best"') == 2
    assert H.metric_table(rows, [H.Column("fid", "FID")]).count('class="best"') == 0  # not ranked
    assert '<td class="best">1</td>' in t and '<td class="best">0.7</td>' in t
    assert "–" in t  # missing values


def test_grid_png_is_inlined_and_page_is_self_contained(tmp_path):
    x = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    png = H.grid_png(x)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    uri = H.png_base64(png)
    assert base64.b64decode(uri.split(",", 1)[1]) == png
    page = H.render("t <x>", [("samples", H.image_block("vae", png))], "sub")
    p = H.write_report(tmp_path / "report.html", page)
    text = p.read_text()
    assert "t &lt;x&gt;" in text and "data:image/png;base64," in text
    assert "src='http" not in text and "<link" not in text and "<script" not in text


def test_media_block_by_mime():
    png = H.grid_png(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
    assert "<img" in H.media_block("a", "image/png", png)
    assert "<audio controls" in H.media_block("b", "audio/wav", b"RIFF")
    text = H.media_block("c", "text/plain; charset=utf-8", b"x < y")
    assert "<pre>x &lt; y</pre>" in text


def test_loss_curves_png():
    rows = {"vae": [{"step": i, "loss": 1 / (i + 1)} for i in range(5)], "gan": [{"step": 1, "loss/g": 1.0}]}
    png = H.loss_curves_png(rows)
    assert png is None or png[:4] == b"\x89PNG"
    assert H.loss_curves_png({"x": [{"step": 1, "lr": 0.1}]}) is None
