"""Backbones for categorical grids ``int64 (B, V, T)`` (V rows such as the four voices of a chorale, T steps, each
cell one of ``levels`` values): a convolutional encoder/decoder pair (VAE) and a bidirectional transformer over
every cell (masked / absorbing-state diffusion).

Networks know nothing of objectives: they map cells to features or to per-cell logits ``(B, V, T, levels)``.

References:
    Huang et al., "Counterpoint by Convolution" (Coconet), 2017, arXiv:1903.07227.
    Vaswani et al., "Attention Is All You Need", 2017, arXiv:1706.03762.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GridEncoder(nn.Module):
    """Cells → one feature vector: per-cell embeddings, rows stacked as channels, strided 1-D convolutions over
    time (each halves T), a linear map to ``hidden``.

    Arguments:
        shape: ``(V, T)``; T must be divisible by ``2 ** len(widths)``.
        levels: values a cell takes.
        widths: channels of each strided convolution.
        hidden: output size.
        embed: embedding size per cell.
    """

    def __init__(self, shape: tuple[int, ...], levels: int, widths: tuple[int, ...], hidden: int,
                 embed: int = 16) -> None:
        super().__init__()
        v, t = shape
        if t % (2 ** len(widths)):
            raise ValueError(f"grid length {t} must be divisible by {2 ** len(widths)} (one halving per width)")
        self.embed = nn.Embedding(levels, embed)
        layers: list[nn.Module] = []
        ch = v * embed
        for w in widths:
            layers += [nn.Conv1d(ch, w, 4, stride=2, padding=1), nn.GroupNorm(min(8, w), w), nn.SiLU()]
            ch = w
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(ch * (t // 2 ** len(widths)), hidden)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t = x.shape
        h = self.embed(x).permute(0, 1, 3, 2).reshape(b, -1, t)  # (B, V·E, T)
        return self.out(self.conv(h).flatten(1))  # (B, hidden)


class GridDecoder(nn.Module):
    """A vector → per-cell logits ``(B, V, T, levels)``: a linear map to the coarsest feature map, transposed 1-D
    convolutions (each doubles T), a 1×1 convolution to ``V · levels`` channels.

    Arguments:
        in_dim: size of the input vector (latent, plus any condition).
        shape: ``(V, T)``.
        levels: values a cell takes.
        widths: channels from the coarsest map up (the encoder's reversed).
    """

    def __init__(self, in_dim: int, shape: tuple[int, ...], levels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.v, self.t = shape
        self.levels = levels
        self.t0 = self.t // 2 ** len(widths)
        self.inp = nn.Linear(in_dim, widths[0] * self.t0)
        layers: list[nn.Module] = []
        ch = widths[0]
        for w in (*widths[1:], widths[-1]):
            layers += [nn.SiLU(), nn.ConvTranspose1d(ch, w, 4, stride=2, padding=1), nn.GroupNorm(min(8, w), w)]
            ch = w
        self.up = nn.Sequential(*layers, nn.SiLU())
        self.head = nn.Conv1d(ch, self.v * levels, 1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.inp(z).view(z.shape[0], -1, self.t0)
        out = self.head(self.up(h))  # (B, V·L, T)
        return out.view(z.shape[0], self.v, self.levels, self.t).permute(0, 1, 3, 2)  # (B, V, T, L)


class GridTransformer(nn.Module):
    """Bidirectional transformer over the ``V · T`` cells of a grid whose cells may also hold a mask value:
    embeddings of the value (``levels + 1`` with the mask), of the row and of the time step (sinusoidal), then
    pre-LayerNorm encoder blocks, then per-cell logits over the ``levels`` real values.

    Arguments:
        shape: ``(V, T)``.
        levels: real values of a cell (the mask is value ``levels``).
        width: model width.
        layers: encoder blocks.
        heads: attention heads.
        dropout: dropout in the blocks.
    """

    pos: Tensor

    def __init__(self, shape: tuple[int, ...], levels: int, width: int = 128, layers: int = 4, heads: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        v, t = shape
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.levels = levels
        self.value = nn.Embedding(levels + 1, width)
        self.row = nn.Embedding(v, width)
        self.register_buffer("pos", sinusoidal(t, width), persistent=False)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, levels)

    def forward(self, x: Tensor) -> Tensor:
        b, v, t = x.shape
        h = self.value(x) + self.row.weight[None, :, None] + self.pos[None, None, :t]  # (B, V, T, W)
        h = self.blocks(h.reshape(b, v * t, -1))
        return self.head(self.norm(h)).view(b, v, t, self.levels)  # (B, V, T, L)


def sinusoidal(n: int, dim: int) -> Tensor:
    """Sinusoidal position table ``(n, dim)`` (Vaswani et al., 2017)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table
