"""Sample grids and point scatters as PNG (Pillow only, no matplotlib needed)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.checkpoint import write_bytes


def grid(images: Tensor | np.ndarray, nrow: int | None = None, pad: int = 2, min_cell: int = 32) -> np.ndarray:
    """Tile ``uint8`` images ``(N, C, H, W)`` into one ``(rows·H', cols·W', C)`` array.

    Small images are upscaled by an integer factor (nearest) so each cell is at least ``min_cell`` pixels.
    """
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError("grid() takes uint8 images of shape (N, C, H, W)")
    n, c, h, w = x.shape
    scale = max(1, math.ceil(min_cell / max(h, w)))
    if scale > 1:
        x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        h, w = h * scale, w * scale
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    arr = x.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = arr[i]
    return out


def save_grid(images: Tensor | np.ndarray, path: str | Path, nrow: int | None = None) -> Path:
    """Write a PNG grid of ``uint8`` images atomically; returns the path."""
    from PIL import Image

    g = grid(images, nrow)
    im = Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())
    return Path(path)


def scatter(points: Tensor | np.ndarray, size: int = 256, pad: float = 0.05) -> np.ndarray:
    """Render 2-D points ``(N, 2)`` (first two dimensions of ``(N, D)``) as a gray ``(size, size)`` density image,
    darker where more points fall; the axes span the points' range plus a ``pad`` margin."""
    p = torch.as_tensor(points, dtype=torch.float64).reshape(len(points), -1)[:, :2].numpy()
    p = p[np.isfinite(p).all(1)]
    if len(p) == 0:
        return np.full((size, size), 255, dtype=np.uint8)
    lo, hi = p.min(0), p.max(0)
    span = np.maximum(hi - lo, 1e-9)
    lo, span = lo - pad * span, span * (1 + 2 * pad)
    ij = np.clip(((p - lo) / span * (size - 1)).round().astype(int), 0, size - 1)
    counts = np.zeros((size, size))
    np.add.at(counts, (size - 1 - ij[:, 1], ij[:, 0]), 1.0)
    shade = np.sqrt(counts / counts.max())
    return (255 * (1 - shade)).round().astype(np.uint8)
