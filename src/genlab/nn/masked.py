"""Masked convolutions for autoregressive image models (gated PixelCNN's vertical and horizontal stacks).

Pixels are generated in raster order and, within a pixel, channel by channel. Feature channels are split into one
group per image channel (:func:`channel_groups`); at the current pixel an output of group ``c`` may see input groups
``< c`` (mask ``A``, first layer) or ``≤ c`` (mask ``B``, later layers), and any group of the pixels to the left.

References:
    van den Oord et al., "Pixel Recurrent Neural Networks", 2016, arXiv:1601.06759 (masks A/B, channel groups).
    van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016, arXiv:1606.05328.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def channel_groups(n: int, groups: int) -> Tensor:
    """Group (0..groups-1) of each of ``n`` feature channels: channel ``j`` belongs to ``j · groups // n``."""
    return torch.arange(n) * groups // n


class HorizontalConv(nn.Conv2d):
    """Row convolution over the current and ``width - 1`` left pixels, masked by channel group at the current pixel.

    Arguments:
        in_ch: input channels.
        out_ch: output channels.
        width: kernel width (1 gives a masked 1×1 convolution).
        in_groups: group of each input channel ``(in_ch,)``.
        out_groups: group of each output channel ``(out_ch,)``.
        mask: ``A`` (strictly lower groups at the current pixel) or ``B`` (lower or equal).
    """

    mask: Tensor

    def __init__(self, in_ch: int, out_ch: int, width: int, in_groups: Tensor, out_groups: Tensor,
                 mask: Literal["A", "B"]) -> None:
        super().__init__(in_ch, out_ch, (1, width))
        m = torch.ones(out_ch, in_ch, 1, width)
        allowed = out_groups[:, None] > in_groups[None, :] if mask == "A" else out_groups[:, None] >= in_groups[None, :]
        m[:, :, 0, -1] = allowed.float()
        self.register_buffer("mask", m)
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (self.width - 1, 0, 0, 0)), self.weight * self.mask, self.bias)  # (B, out, H, W)


class VerticalConv(nn.Conv2d):
    """Convolution over the current and ``height - 1`` rows above, ``width`` columns centred (zero padding).

    Arguments:
        in_ch: input channels.
        out_ch: output channels.
        height: rows covered (the current one included).
        width: columns covered (odd).
    """

    def __init__(self, in_ch: int, out_ch: int, height: int, width: int) -> None:
        super().__init__(in_ch, out_ch, (height, width))
        self.pads = (width // 2, width // 2, height - 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, self.pads))  # (B, out, H, W)


def down_shift(x: Tensor) -> Tensor:
    """Shift rows down by one (row 0 becomes zeros): row ``i`` then only holds information from rows ``< i``."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]
