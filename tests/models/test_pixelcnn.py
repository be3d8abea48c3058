"""Gated PixelCNN: causality (raster and channel order), exact per-pixel likelihood, cached sampling, 8 bits/dim."""

from __future__ import annotations

import pytest
import torch

import genlab
from genlab.core import DataSpec
from genlab.data.images import to_model
from genlab.metrics.likelihood import bits_per_dim


def _model(channels: int, output: str = "softmax", size: int = 5, classes: int = 3, kernel: int = 3):
    spec = DataSpec("image", (channels, size, size), num_classes=classes)
    m = genlab.create("pixelcnn", spec, hidden=6 * channels, layers=3, kernel=kernel, output=output,
                      mixtures=2, class_dim=4).double()
    with torch.no_grad():
        for p in m.parameters():  # random non-trivial weights (the output layer starts at zero)
            p.normal_(0, 0.3)
    return m.eval()


@pytest.mark.parametrize("channels", [1, 3])
def test_causality_raster_and_channel_order(channels):
    m = _model(channels, size=4)
    size = m.spec.shape[-1]
    x = torch.randint(0, 256, (1, channels, size, size), dtype=torch.uint8)
    v = to_model(x).double().requires_grad_(True)
    out = m.net(v, m._ctx(torch.tensor([1])))  # (1, C, P, H, W)
    order = torch.arange(size * size).view(size, size)
    for i in range(size):
        for j in range(size):
            for c in range(channels):
                (g,) = torch.autograd.grad(out[0, c, :, i, j].sum(), v, retain_graph=True)
                g = g[0]  # (C, H, W)
                future = (order >= i * size + j).expand(channels, size, size).clone()
                future[:c, i, j] = False  # earlier channels of the current pixel are allowed
                assert torch.all(g[future] == 0), f"output ({c},{i},{j}) sees a future sub-pixel"
                if i * size + j >= size + 1:  # and it does see the past (no blind spot above-right)
                    assert g[:, i - 1, min(j + 1, size - 1)].abs().sum() > 0


@pytest.mark.parametrize("output", ["softmax", "logistic"])
def test_log_prob_is_sum_of_sequential_conditionals(output):
    m = _model(3, output, size=3)
    x = torch.randint(0, 256, (2, 3, 3, 3), dtype=torch.uint8)
    y = torch.tensor([0, 2])
    lp = m.log_prob(x, y)
    assert torch.allclose(lp, m.pixel_log_probs(x, y).flatten(1).sum(1))
    # each conditional computed from its prefix only (later sub-pixels zeroed), all prefixes in one batch
    prefixes, where = [], []
    for i in range(3):
        for j in range(3):
            for c in range(3):
                prefix = x.clone()
                prefix.view(2, 3, 9)[:, :, i * 3 + j + 1 :] = 0
                prefix[:, c:, i, j] = 0
                prefixes.append(prefix)
                where.append((c, i, j))
    xs = torch.cat(prefixes)  # (27 · 2, C, H, W)
    out = m.net(m._inp(xs), m._ctx(y.repeat(len(where))))
    per = m._element_log_prob(x.repeat(len(where), 1, 1, 1), out).view(len(where), 2, 3, 3, 3)
    total = sum(per[n, :, c, i, j] for n, (c, i, j) in enumerate(where))
    assert torch.allclose(lp, total, atol=1e-9)


@pytest.mark.parametrize(("output", "kernel"), [("softmax", 3), ("logistic", 5)])
def test_cached_sampling_matches_full_recomputation(output, kernel):
    m = _model(3, output, size=5, kernel=kernel)
    a = m.sample(2, torch.tensor([0, 2]), generator=torch.Generator().manual_seed(1))
    assert m.last_sample_stats["subpixels_per_s"] > 0
    b = m.sample(2, torch.tensor([0, 2]), generator=torch.Generator().manual_seed(1), cached=False)
    assert a.dtype == torch.uint8 and torch.equal(a, b)


def test_uniform_model_scores_exactly_8_bits_per_dim():
    spec = DataSpec("image", (1, 8, 8), num_classes=10)
    m = genlab.create("pixelcnn", spec, hidden=8, layers=2, kernel=3)
    with torch.no_grad():  # zero output layer: every conditional is uniform over 256 values
        m.net.head2.weight.zero_()
        m.net.head2.bias.zero_()
    x = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    assert bits_per_dim(m.log_prob(x, torch.arange(7)), spec.dims) == pytest.approx(8.0, abs=1e-6)
