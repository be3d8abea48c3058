"""Coupling and autoregressive bijections: affine coupling (conv or MLP conditioner), rational-quadratic spline
coupling, and the masked autoregressive flow (MADE conditioner).

References:
    Dinh et al., "Density estimation using Real NVP", 2017, arXiv:1605.08803 (affine coupling).
    Kingma & Dhariwal, "Glow", 2018, arXiv:1807.03039 (zero-initialised last layer, sigmoid scale).
    Durkan et al., "Neural Spline Flows", 2019, arXiv:1906.04032 (rational-quadratic splines).
    Papamakarios et al., "Masked Autoregressive Flow for Density Estimation", 2017, arXiv:1705.07057.
    Germain et al., "MADE: Masked Autoencoder for Distribution Estimation", 2015, arXiv:1502.03509.
"""

from __future__ import annotations

from typing import TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.flows import Bijection

_Layer = TypeVar("_Layer", bound="nn.Conv2d | nn.Linear")


def _zero(m: _Layer) -> _Layer:
    nn.init.zeros_(m.weight)
    nn.init.zeros_(cast(Tensor, m.bias))
    return m


class ConvConditioner(nn.Module):
    """Glow's coupling network: 3×3 conv, 1×1 conv, zero-initialised 3×3 conv; a context vector adds a
    per-channel bias to the first hidden layer.

    Arguments:
        in_ch: input channels.
        out_ch: output channels.
        hidden: hidden channels.
        ctx_dim: size of the context vector (0 for none).
    """

    def __init__(self, in_ch: int, out_ch: int, hidden: int, ctx_dim: int = 0) -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_ch, hidden, 3, padding=1)
        self.ctx = nn.Linear(ctx_dim, hidden) if ctx_dim else None
        self.mid = nn.Conv2d(hidden, hidden, 1)
        self.out = _zero(nn.Conv2d(hidden, out_ch, 3, padding=1))

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> Tensor:
        h = self.inp(x)
        if self.ctx is not None and ctx is not None:
            h = h + self.ctx(ctx)[:, :, None, None]
        return self.out(F.relu(self.mid(F.relu(h))))  # (B, out_ch, H, W)


class MLPConditioner(nn.Module):
    """Two-hidden-layer MLP with a zero-initialised output layer (the flow starts as the identity).

    Arguments:
        in_dim: input size (plus ``ctx_dim`` when a context vector is given).
        out_dim: output size.
        hidden: hidden width.
        ctx_dim: size of the context vector (0 for none).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int, ctx_dim: int = 0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim + ctx_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), _zero(nn.Linear(hidden, out_dim)))

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> Tensor:
        return self.net(x if ctx is None else torch.cat([x, ctx], dim=1))


class AffineCoupling(Bijection):
    """Affine coupling: the first ``split`` channels pass through and condition a scale and shift of the rest,
    ``z_b = (x_b + t(x_a)) · σ(r(x_a) + 2)``, ``log|det| = Σ log σ(r + 2)``.

    Arguments:
        channels: channels (image) or dimensions (vector) C.
        hidden: conditioner width.
        image: conv conditioner on ``(B, C, H, W)`` when True, MLP on ``(B, C)`` otherwise.
        ctx_dim: size of the context vector (0 for none).
    """

    def __init__(self, channels: int, hidden: int, image: bool, ctx_dim: int = 0) -> None:
        super().__init__()
        self.split = channels // 2
        rest = channels - self.split
        net = ConvConditioner if image else MLPConditioner
        self.net = net(self.split, 2 * rest, hidden, ctx_dim)

    def _params(self, xa: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        shift, raw = self.net(xa, ctx).chunk(2, dim=1)
        return shift, F.logsigmoid(raw + 2.0)  # shift, log scale

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, : self.split], x[:, self.split :]
        shift, log_scale = self._params(xa, ctx)
        zb = (xb + shift) * log_scale.exp()
        return torch.cat([xa, zb], dim=1), log_scale.flatten(1).sum(1)

    def inverse(self, z: Tensor, ctx: Tensor | None = None) -> Tensor:
        za, zb = z[:, : self.split], z[:, self.split :]
        shift, log_scale = self._params(za, ctx)
        return torch.cat([za, zb * torch.exp(-log_scale) - shift], dim=1)


def rational_quadratic_spline(x: Tensor, widths: Tensor, heights: Tensor, derivs: Tensor, inverse: bool = False,
                              bound: float = 4.0, min_bin: float = 1e-3, min_deriv: float = 1e-3
                              ) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline on ``[-bound, bound]`` with identity (linear) tails outside.

    Arguments:
        x: inputs, any shape ``S``.
        widths: unnormalised bin widths ``(*S, K)``.
        heights: unnormalised bin heights ``(*S, K)``.
        derivs: unnormalised derivatives at the ``K - 1`` inner knots ``(*S, K - 1)`` (1 at the two ends).
        inverse: evaluate the inverse map instead.
        bound: half-width of the spline's interval.
        min_bin: smallest bin width/height as a fraction of the interval.
        min_deriv: smallest knot derivative.

    Returns:
        (y, log |dy/dx|) for the forward map, (x, log |dx/dy|) for the inverse, each of shape ``S``.

    References:
        Durkan et al., "Neural Spline Flows", 2019, arXiv:1906.04032 (eqs. 4-8 and appendix A).
    """
    k = widths.shape[-1]
    inside = (x > -bound) & (x < bound)
    xi = x.clamp(-bound, bound)

    def knots(raw: Tensor) -> tuple[Tensor, Tensor]:
        bins = min_bin + (1 - min_bin * k) * torch.softmax(raw, dim=-1)
        cum = F.pad(torch.cumsum(bins, dim=-1), (1, 0))
        cum = 2 * bound * cum - bound  # (*S, K + 1), from -bound to bound
        cum = torch.cat([torch.full_like(cum[..., :1], -bound), cum[..., 1:-1], torch.full_like(cum[..., :1], bound)],
                        dim=-1)
        return cum, cum[..., 1:] - cum[..., :-1]

    cw, w = knots(widths)
    ch, h = knots(heights)
    d = F.pad(min_deriv + F.softplus(derivs), (1, 1), value=1.0)  # (*S, K + 1)
    cum_search = ch if inverse else cw
    idx = (xi[..., None] >= cum_search[..., 1:-1]).sum(-1, keepdim=True)  # bin index (*S, 1), in 0..K-1

    def pick(t: Tensor) -> Tensor:
        return t.gather(-1, idx)[..., 0]

    x_k, w_k, y_k, h_k = pick(cw), pick(w), pick(ch), pick(h)
    d_k, d_k1 = pick(d[..., :-1]), pick(d[..., 1:])
    s = h_k / w_k
    if not inverse:
        th = (xi - x_k) / w_k
        t1 = th * (1 - th)
        denom = s + (d_k1 + d_k - 2 * s) * t1
        y = y_k + h_k * (s * th.pow(2) + d_k * t1) / denom  # eq. 4
        dy = s.pow(2) * (d_k1 * th.pow(2) + 2 * s * t1 + d_k * (1 - th).pow(2)) / denom.pow(2)  # eq. 5
        ld = torch.log(dy)
    else:
        dy_ = xi - y_k
        a = h_k * (s - d_k) + dy_ * (d_k1 + d_k - 2 * s)
        b = h_k * d_k - dy_ * (d_k1 + d_k - 2 * s)
        c = -s * dy_
        th = (2 * c) / (-b - torch.sqrt((b.pow(2) - 4 * a * c).clamp(min=0)))  # appendix A, stable root
        t1 = th * (1 - th)
        denom = s + (d_k1 + d_k - 2 * s) * t1
        y = th * w_k + x_k
        dy = s.pow(2) * (d_k1 * th.pow(2) + 2 * s * t1 + d_k * (1 - th).pow(2)) / denom.pow(2)
        ld = -torch.log(dy)
    return torch.where(inside, y, x), torch.where(inside, ld, torch.zeros_like(ld))


class SplineCoupling(Bijection):
    """Rational-quadratic spline coupling on vectors: the first half conditions K-bin monotone splines of the rest.

    Arguments:
        dims: vector size D (at least 2).
        hidden: MLP conditioner width.
        bins: number of spline bins K.
        bound: splines act on ``[-bound, bound]``; identity outside.
        ctx_dim: size of the context vector (0 for none).

    References:
        Durkan et al., "Neural Spline Flows", 2019, arXiv:1906.04032.
    """

    def __init__(self, dims: int, hidden: int, bins: int = 8, bound: float = 4.0, ctx_dim: int = 0) -> None:
        super().__init__()
        self.split, self.bins, self.bound = dims // 2, bins, bound
        self.rest = dims - self.split
        self.net = MLPConditioner(self.split, self.rest * (3 * bins - 1), hidden, ctx_dim)

    def _spline(self, xa: Tensor, xb: Tensor, ctx: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        p = self.net(xa, ctx).view(xa.shape[0], self.rest, 3 * self.bins - 1)  # (B, D_b, 3K - 1)
        w, h, d = p.split([self.bins, self.bins, self.bins - 1], dim=-1)
        y, ld = rational_quadratic_spline(xb, w, h, d, inverse=inverse, bound=self.bound)
        return y, ld.sum(1)

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, : self.split], x[:, self.split :]
        zb, ld = self._spline(xa, xb, ctx, inverse=False)
        return torch.cat([xa, zb], dim=1), ld

    def inverse(self, z: Tensor, ctx: Tensor | None = None) -> Tensor:
        za, zb = z[:, : self.split], z[:, self.split :]
        xb, _ = self._spline(za, zb, ctx, inverse=True)
        return torch.cat([za, xb], dim=1)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (MADE)."""

    mask: Tensor

    def __init__(self, in_features: int, out_features: int, mask: Tensor) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MAF(Bijection):
    """Masked autoregressive affine layer: ``z_i = (x_i - μ_i(x_<i)) · exp(-α_i(x_<i))``, one MADE pass for the
    density and D sequential passes to sample.

    Arguments:
        dims: vector size D.
        hidden: MADE hidden width.
        ctx_dim: size of the context vector (0 for none; it feeds every hidden unit).

    References:
        Papamakarios et al., "Masked Autoregressive Flow", 2017, arXiv:1705.07057.
        Germain et al., "MADE", 2015, arXiv:1502.03509.
    """

    def __init__(self, dims: int, hidden: int, ctx_dim: int = 0) -> None:
        super().__init__()
        self.dims = dims
        deg_in = torch.arange(1, dims + 1)
        deg_h = torch.arange(hidden) % max(1, dims - 1) + 1
        m1 = (deg_h[:, None] >= deg_in[None, :]).float()  # (H, D)
        m2 = (deg_h[:, None] >= deg_h[None, :]).float()  # (H, H)
        m3 = (deg_in[:, None] > deg_h[None, :]).float().repeat(2, 1)  # (2D, H): output i sees degrees < i
        self.l1 = MaskedLinear(dims, hidden, m1)
        self.l2 = MaskedLinear(hidden, hidden, m2)
        self.l3 = _zero(MaskedLinear(hidden, 2 * dims, m3))
        self.ctx = nn.Linear(ctx_dim, hidden) if ctx_dim else None

    def _params(self, x: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.l1(x)
        if self.ctx is not None and ctx is not None:
            h = h + self.ctx(ctx)
        mu, alpha = self.l3(F.silu(self.l2(F.silu(h)))).chunk(2, dim=1)
        return mu, alpha.clamp(-7.0, 7.0)

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu, alpha = self._params(x, ctx)
        return (x - mu) * torch.exp(-alpha), -alpha.sum(1)

    def inverse(self, z: Tensor, ctx: Tensor | None = None) -> Tensor:
        x = torch.zeros_like(z)
        for i in range(self.dims):
            mu, alpha = self._params(x, ctx)
            x = torch.cat([x[:, :i], z[:, i : i + 1] * torch.exp(alpha[:, i : i + 1]) + mu[:, i : i + 1],
                           x[:, i + 1 :]], dim=1)
        return x
