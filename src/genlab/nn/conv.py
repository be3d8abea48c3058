"""Convolutional encoders and decoders for images of any size (stride-2 down, resize-and-conv up)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

Act = Literal["silu", "relu", "lrelu"]


def activation(name: Act) -> nn.Module:
    return {"silu": nn.SiLU(), "relu": nn.ReLU(), "lrelu": nn.LeakyReLU(0.2)}[name]


def group_norm(ch: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide ``ch`` (batch-size independent, so DDP-exact)."""
    groups = math.gcd(ch, 32)
    return nn.GroupNorm(groups, ch)


def down_sizes(hw: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 conv (kernel 3, padding 1): ``ceil(s / 2)``."""
    sizes = [hw]
    for _ in range(levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


class ConvEncoder(nn.Module):
    """Image ``(B, C, H, W)`` → vector ``(B, out_dim)``: a 3×3 stem, then per width a stride-2 conv and a conv.

    Arguments:
        in_ch: input channels.
        hw: input height and width.
        widths: channels per level; each level halves the resolution.
        out_dim: size of the output vector (a linear layer on the flattened features).
        norm: ``"group"`` for GroupNorm after each conv, ``"none"`` for none.
        act: activation.
        spectral: wrap every conv/linear in spectral normalization (Miyato et al. 2018, arXiv:1802.05957).
    """

    def __init__(self, in_ch: int, hw: tuple[int, int], widths: tuple[int, ...], out_dim: int,
                 norm: Literal["group", "none"] = "group", act: Act = "silu", spectral: bool = False) -> None:
        super().__init__()
        sn = spectral_norm if spectral else (lambda m: m)
        layers: list[nn.Module] = [sn(nn.Conv2d(in_ch, widths[0], 3, padding=1)), activation(act)]
        prev = widths[0]
        for w in widths:
            layers += [sn(nn.Conv2d(prev, w, 3, stride=2, padding=1))]
            layers += [group_norm(w)] if norm == "group" else []
            layers += [activation(act), sn(nn.Conv2d(w, w, 3, padding=1))]
            layers += [group_norm(w)] if norm == "group" else []
            layers += [activation(act)]
            prev = w
        self.net = nn.Sequential(*layers)
        h, w_ = down_sizes(hw, len(widths))[-1]
        self.out = sn(nn.Linear(prev * h * w_, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.net(x).flatten(1))  # (B, out_dim)


class ConvDecoder(nn.Module):
    """Vector ``(B, in_dim)`` → image ``(B, out_ch, H, W)``: linear to the lowest resolution, then per level a
    nearest-neighbour resize to the next size and two 3×3 convs, then a 3×3 output conv.

    Arguments:
        in_dim: input vector size.
        out_ch: output channels (e.g. ``2C`` for a mean and a log-scale per pixel).
        hw: output height and width.
        widths: channels per level, lowest resolution first.
        act: activation.
    """

    def __init__(self, in_dim: int, out_ch: int, hw: tuple[int, int], widths: tuple[int, ...],
                 act: Act = "silu") -> None:
        super().__init__()
        self.sizes = down_sizes(hw, len(widths))[::-1]  # lowest first, ends at hw
        h, w = self.sizes[0]
        self.widths = widths
        self.inp = nn.Linear(in_dim, widths[0] * h * w)
        self.blocks = nn.ModuleList()
        prev = widths[0]
        for w_ in widths:
            self.blocks.append(nn.Sequential(
                nn.Conv2d(prev, w_, 3, padding=1), group_norm(w_), activation(act),
                nn.Conv2d(w_, w_, 3, padding=1), group_norm(w_), activation(act)))
            prev = w_
        self.out = nn.Conv2d(prev, out_ch, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h, w = self.sizes[0]
        x = self.inp(z).view(z.shape[0], self.widths[0], h, w)
        for block, size in zip(self.blocks, self.sizes[1:], strict=True):
            x = block(F.interpolate(x, size=size, mode="nearest"))
        return self.out(x)  # (B, out_ch, H, W)


def class_embedding(num_classes: int, dim: int) -> nn.Embedding | None:
    return nn.Embedding(num_classes, dim) if num_classes > 0 and dim > 0 else None


def cat_cond(z: Tensor, emb: nn.Embedding | None, y: Tensor | None) -> Tensor:
    """Concatenate a class embedding to a vector when the model is conditional."""
    return z if emb is None or y is None else torch.cat([z, emb(y)], dim=1)
