"""A U-Net for images of any size: sinusoidal time embedding, residual blocks with GroupNorm, self-attention at
chosen resolutions and an optional class embedding. It maps ``(x, time, label)`` to an image-shaped output and knows
nothing of noise schedules or objectives.

References:
    Ronneberger et al., "U-Net", 2015, arXiv:1505.04597.
    Ho et al., "Denoising Diffusion Probabilistic Models", 2020, arXiv:2006.11239 (Appendix B architecture).
    Vaswani et al., "Attention Is All You Need", 2017, arXiv:1706.03762 (sinusoidal embedding).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nn.conv import group_norm


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``[cos(t ω_i), sin(t ω_i)]`` with ``ω_i = max_period^{-i/(dim/2)}`` → ``(B, dim)``.

    References:
        Vaswani et al., 2017, arXiv:1706.03762 (Sec. 3.5).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding in between, and a 1×1 skip when widths differ.

    The embedding (time + class) is added to the features (``scale_shift=False``, DDPM) or modulates the second
    normalization, ``norm(h) · (1 + s) + b`` with ``(s, b)`` from the embedding (``scale_shift=True``, the
    adaptive group norm of Dhariwal & Nichol, 2021, arXiv:2105.05233, Sec. 3), which lets the class and the noise
    level gate every channel rather than only shift it.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0, scale_shift: bool = False) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1, self.conv1 = group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2, self.conv2 = group_norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(cast(Tensor, self.conv2.bias))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb(F.silu(emb))[:, :, None, None]  # (B, out_ch or 2·out_ch, 1, 1)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, residual."""

    def __init__(self, ch: int, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = group_norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(cast(Tensor, self.proj.bias))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        out = out.transpose(-1, -2).reshape(b, c, h, w)  # (B, nh, HW, hs) -> (B, C, H, W)
        return x + self.proj(out)


class UNet(nn.Module):
    """U-Net ``(x (B, C, H, W), time (B,), label (B,) | None) -> (B, out_ch, H, W)``.

    Arguments:
        in_ch: input channels.
        out_ch: output channels.
        size: input height (= width is not required; attention levels are chosen by the height).
        channels: base width.
        channel_mult: width multiplier per resolution level; each level after the first halves the resolution.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: heights at which to add self-attention after each residual block.
        num_classes: size of the class embedding table (0 = unconditional).
        heads: attention heads.
        dropout: dropout inside residual blocks.
        scale_shift: condition the residual blocks by adaptive group norm (scale and shift) instead of addition.

    References:
        Ho et al., 2020, arXiv:2006.11239 (Appendix B); Nichol & Dhariwal, 2021, arXiv:2102.09672;
        Dhariwal & Nichol, 2021, arXiv:2105.05233 (adaptive group norm).
    """

    def __init__(self, in_ch: int, out_ch: int, size: int, channels: int = 64,
                 channel_mult: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 2,
                 attn_resolutions: tuple[int, ...] = (7,), num_classes: int = 0, heads: int = 4,
                 dropout: float = 0.0, scale_shift: bool = False) -> None:
        super().__init__()
        ss = scale_shift
        emb_dim = 4 * channels
        self.channels = channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(num_classes, emb_dim) if num_classes > 0 else None
        self.stem = nn.Conv2d(in_ch, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [channels]
        ch, res = channels, size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                block = nn.ModuleList([ResBlock(ch, channels * mult, emb_dim, dropout, ss)])
                ch = channels * mult
                if res in attn_resolutions:
                    block.append(Attention(ch, heads))
                self.down.append(block)
                skips.append(ch)
            if level + 1 < len(channel_mult):
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res = (res + 1) // 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout, ss), Attention(ch, heads),
                                  ResBlock(ch, ch, emb_dim, dropout, ss)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(ch + skips.pop(), channels * mult, emb_dim, dropout, ss)])
                ch = channels * mult
                if res in attn_resolutions:
                    block.append(Attention(ch, heads))
                if level > 0 and i == num_res_blocks:
                    block.append(nn.Conv2d(ch, ch, 3, padding=1))  # after a nearest resize to the skip's size
                    res = res * 2
                self.up.append(block)
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        last = cast(nn.Conv2d, self.out[-1])
        nn.init.zeros_(last.weight)
        nn.init.zeros_(cast(Tensor, last.bias))

    @staticmethod
    def _run(block: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
        for layer in block:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x: Tensor, time: Tensor, label: Tensor | None = None) -> Tensor:
        emb = self.time_mlp(timestep_embedding(time, self.channels))  # (B, 4·ch)
        if self.label_emb is not None and label is not None:
            emb = emb + self.label_emb(label)
        h = self.stem(x)
        hs = [h]
        for block in cast(Iterable[nn.ModuleList], self.down):
            h = self._run(block, h, emb)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for block in cast(Iterable[nn.ModuleList], self.up):
            skip = hs.pop()
            h = torch.cat([h, skip], dim=1)
            first, *rest = block
            h = first(h, emb)
            for layer in rest:
                if isinstance(layer, nn.Conv2d):
                    h = layer(F.interpolate(h, size=hs[-1].shape[-2:], mode="nearest"))
                else:
                    h = layer(h)
        return self.out(h)
