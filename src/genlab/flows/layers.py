"""Channel-wise bijections shared by image and vector flows: actnorm, LU invertible linear map, squeeze, reversal.

Tensors are ``(B, C)`` (vectors) or ``(B, C, H, W)`` (images); channel-wise maps act on dimension 1 and their
log-determinant is multiplied by the number of spatial positions.

References:
    Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", 2018, arXiv:1807.03039.
    Dinh et al., "Density estimation using Real NVP", 2017, arXiv:1605.08803 (squeeze).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from genlab.flows import Bijection


def _spatial(x: Tensor) -> int:
    return math.prod(x.shape[2:])


def _channel_view(v: Tensor, x: Tensor) -> Tensor:
    return v.view(1, -1, *([1] * (x.ndim - 2)))


class ActNorm(Bijection):
    """Per-channel affine map ``z = (x + b) · exp(s)`` with data-dependent initialisation (zero mean, unit
    variance per channel on the first training batch; averaged over ranks under DDP).

    Arguments:
        channels: number of channels C.

    References:
        Kingma & Dhariwal, "Glow", 2018, arXiv:1807.03039 (section 3.1).
    """

    initialized: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.uint8))

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        dims = [0, *range(2, x.ndim)]
        stats = torch.stack([x.mean(dims), x.pow(2).mean(dims)])  # (2, C)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
            stats /= dist.get_world_size()
        mean, sq = stats
        std = (sq - mean.pow(2)).clamp(min=0).sqrt()
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self._init(x)
        z = (x + _channel_view(self.bias, x)) * _channel_view(self.log_scale.exp(), x)
        return z, self.log_scale.sum().expand(x.shape[0]) * _spatial(x)

    def inverse(self, z: Tensor, ctx: Tensor | None = None) -> Tensor:
        return z * _channel_view(torch.exp(-self.log_scale), z) - _channel_view(self.bias, z)


class InvertibleLinear(Bijection):
    """Invertible channel mixing ``z = W x`` (a 1×1 convolution on images), ``W = P L (U + diag(sign · e^s))``.

    The LU parametrisation makes ``log |det W| = Σ s`` cheap; W starts as a random rotation.

    Arguments:
        channels: number of channels C.

    References:
        Kingma & Dhariwal, "Glow", 2018, arXiv:1807.03039 (section 3.2, LU decomposition).
    """

    perm: Tensor
    sign_s: Tensor
    lower_mask: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> Tensor:
        eye = torch.eye(self.lower.shape[0], device=self.lower.device, dtype=self.lower.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
        return self.perm @ lower @ upper  # (C, C)

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = torch.einsum("ij,bj...->bi...", self.weight(), x)
        return z, self.log_s.sum().expand(x.shape[0]) * _spatial(x)

    def inverse(self, z: Tensor, ctx: Tensor | None = None) -> Tensor:
        return torch.einsum("ij,bj...->bi...", torch.linalg.inv(self.weight()), z)


class Squeeze(Bijection):
    """Space-to-depth ``(B, C, H, W) → (B, 4C, H/2, W/2)``: a permutation, so log|det| = 0.

    References:
        Dinh et al., "Real NVP", 2017, arXiv:1605.08803 (section 3.6).
    """

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        z = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return z, x.new_zeros(b)

    def inverse(self, z: Tensor, ctx: Tensor | None = None) -> Tensor:
        b, c4, h, w = z.shape
        c = c4 // 4
        return z.view(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


class Reverse(Bijection):
    """Reverse the order of the channels (between coupling or autoregressive layers); log|det| = 0."""

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.flip(1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, ctx: Tensor | None = None) -> Tensor:
        return z.flip(1)
