"""Bijections for normalizing flows: each maps data x to latent z and returns ``log |det ∂z/∂x|`` per example.

Every bijection is an ``nn.Module`` with ``forward(x, ctx) -> (z, logdet)`` (the density direction) and
``inverse(z, ctx) -> x`` (the sampling direction); ``ctx`` is an optional context vector ``(B, E)`` (e.g. a class
embedding) for the conditioners that take one. ``log p(x) = log p(z) + logdet``.

Modules: :mod:`genlab.flows.layers` (actnorm, LU-parametrised invertible linear / 1×1 conv, squeeze, permutations),
:mod:`genlab.flows.coupling` (affine coupling with conv or MLP conditioners, rational-quadratic spline coupling,
MAF).

References:
    Dinh et al., "Density estimation using Real NVP", 2017, arXiv:1605.08803.
    Kingma & Dhariwal, "Glow", 2018, arXiv:1807.03039.
    Papamakarios et al., "Masked Autoregressive Flow", 2017, arXiv:1705.07057.
    Durkan et al., "Neural Spline Flows", 2019, arXiv:1906.04032.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from torch import Tensor, nn


class Bijection(nn.Module):
    """Base of all bijections: ``forward`` x → (z, log|det J|) and ``inverse`` z → x."""

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, z: Tensor, ctx: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class Chain(Bijection):
    """Composition of bijections applied in order (their log-determinants add up).

    Arguments:
        layers: the bijections, data side first.
    """

    def __init__(self, layers: list[Bijection]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x, ctx)
            total = total + ld
        return x, total

    def inverse(self, z: Tensor, ctx: Tensor | None = None) -> Tensor:
        for layer in reversed(cast(Sequence[Bijection], self.layers)):
            z = layer.inverse(z, ctx)
        return z
