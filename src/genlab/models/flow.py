"""Normalizing flows: multi-scale Glow for 8-bit images, coupling / spline / MAF flows for vectors and tables.

Images: uniform (or variational) dequantization ``v = (k + u)/128 - 1``, then ``levels`` scales of squeeze →
``steps`` × (actnorm → LU 1×1 conv → affine coupling) → factor out half the channels under a Gaussian whose mean
and scale a zero-initialised conv predicts from the kept half (and the class); the top latent has a learned,
class-conditional Gaussian prior. ``log_prob`` is the dequantization bound on the *discrete* data,
``log P(k) ≥ E_q[log p(v) - log q(u|k)] + D · log(2/256)`` (see :data:`genlab.data.images.DEQUANT_LOG_BIN`),
estimated with ``eval_samples`` importance samples; reports label it a bound.

Vectors: ``steps`` × (actnorm → coupling layer → reverse) on a standard-normal base; the coupling layer is a
rational-quadratic spline (Neural Spline Flow), an affine coupling (RealNVP) or a MAF layer; ``log_prob`` is the
exact continuous log-density.

Tables: the same vector flow on the transformed rows, each one-hot block lifted to a continuous point whose argmax is
its category (:func:`genlab.flows.categorical.argmax_lift`); ``log_prob`` is the dequantisation bound on the density
of the numbers times the probability of the categories, samples take each block's argmax.

References:
    Dinh et al., "Density estimation using Real NVP", 2017, arXiv:1605.08803.
    Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", 2018, arXiv:1807.03039.
    Ho et al., "Flow++", 2019, arXiv:1902.00275 (variational dequantization).
    Durkan et al., "Neural Spline Flows", 2019, arXiv:1906.04032.
    Papamakarios et al., "Masked Autoregressive Flow", 2017, arXiv:1705.07057.
    Hoogeboom et al., "Argmax Flows and Multinomial Diffusion", 2021, arXiv:2102.05379 (categories).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.config import check
from genlab.core import Batch, DataSpec, GenerativeModel, Likelihood, register_model
from genlab.data.images import DEQUANT_LOG_BIN, dequantize, to_model
from genlab.data.tables import TableLayout
from genlab.errors import CapabilityError, ConfigError
from genlab.flows import Bijection, Chain
from genlab.flows.categorical import argmax_lift
from genlab.flows.coupling import MAF, AffineCoupling, ConvConditioner, SplineCoupling
from genlab.flows.layers import ActNorm, InvertibleLinear, Reverse, Squeeze
from genlab.nn.conv import class_embedding

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class FlowConfig:
    """Flow hyper-parameters (image and vector flows share one config).

    Arguments:
        levels: image scales; each squeezes 2×2 pixels into channels (height and width must divide by 2^levels).
        steps: flow steps per scale (images) or layers (vectors).
        hidden: channels of the coupling conv nets (images) or width of the MLP conditioners (vectors).
        dequantization: ``uniform`` noise, or ``variational`` (a learned logit-normal q(u|x), Flow++).
        dequant_hidden: channels of the variational dequantizer's conv net.
        eval_samples: importance samples of the dequantization bound in ``log_prob`` (images).
        conditional: class-conditional priors and coupling nets when the data has labels.
        class_dim: size of the class embedding.
        vector_layer: vector flows' layer: ``spline`` (rational-quadratic spline coupling), ``affine`` coupling
            or ``maf`` (masked autoregressive).
        bins: spline bins.
        tail_bound: splines act on ``[-tail_bound, tail_bound]`` and are the identity outside.
    """

    levels: int = 2
    steps: int = 8
    hidden: int = 64
    dequantization: Literal["uniform", "variational"] = "uniform"
    dequant_hidden: int = 32
    eval_samples: int = 1
    conditional: bool = True
    class_dim: int = 16
    vector_layer: Literal["spline", "affine", "maf"] = "spline"
    bins: int = 8
    tail_bound: float = 4.0

    def __post_init__(self) -> None:
        check(self.levels >= 1, "--levels must be at least 1")
        check(self.steps >= 1, "--steps must be at least 1")
        check(self.hidden > 0 and self.dequant_hidden > 0, "--hidden/--dequant-hidden must be positive")
        check(self.eval_samples >= 1, "--eval-samples must be at least 1")
        check(self.bins >= 2, "--bins must be at least 2")
        check(self.tail_bound > 0, "--tail-bound must be positive")


@dataclass(frozen=True)
class FlowSampleOptions:
    """Sampling options of flows.

    Arguments:
        temperature: scale of the prior's standard deviation (Glow's T; below 1 trades diversity for quality).
    """

    temperature: float = 1.0

    def __post_init__(self) -> None:
        check(self.temperature > 0, f"--temperature must be positive, got {self.temperature}")


def gaussian_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Elementwise ``log N(z; mean, exp(log_std)²)``."""
    return -0.5 * (LOG_2PI + 2 * log_std + ((z - mean) * torch.exp(-log_std)).pow(2))


def _noise(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=dev).to(device=like.device, dtype=like.dtype)


class SplitPrior(nn.Module):
    """Gaussian prior of a factored-out latent: mean and log-std from a zero-initialised 3×3 conv on the kept
    channels plus a per-channel class bias (Glow's split prior).

    Arguments:
        keep: channels kept for the next scale.
        out: channels factored out.
        ctx_dim: size of the class embedding (0 for none).
    """

    def __init__(self, keep: int, out: int, ctx_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(keep, 2 * out, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(cast(Tensor, self.conv.bias))
        self.ctx = nn.Linear(ctx_dim, 2 * out) if ctx_dim else None
        if self.ctx is not None:
            nn.init.zeros_(self.ctx.weight)
            nn.init.zeros_(self.ctx.bias)

    def forward(self, h: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        p = self.conv(h)
        if self.ctx is not None and ctx is not None:
            p = p + self.ctx(ctx)[:, :, None, None]
        mean, log_std = p.chunk(2, dim=1)
        return mean, log_std  # each (B, out, H, W)


class TopPrior(nn.Module):
    """Learned Gaussian prior of the top latent ``(C, H, W)``, shifted per channel by the class.

    Arguments:
        shape: latent shape (C, H, W).
        ctx_dim: size of the class embedding (0 for none).
    """

    def __init__(self, shape: tuple[int, int, int], ctx_dim: int) -> None:
        super().__init__()
        self.params = nn.Parameter(torch.zeros(2 * shape[0], *shape[1:]))
        self.ctx = nn.Linear(ctx_dim, 2 * shape[0]) if ctx_dim else None
        if self.ctx is not None:
            nn.init.zeros_(self.ctx.weight)
            nn.init.zeros_(self.ctx.bias)

    def forward(self, n: int, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        p = self.params.expand(n, *self.params.shape)
        if self.ctx is not None and ctx is not None:
            p = p + self.ctx(ctx)[:, :, None, None]
        mean, log_std = p.chunk(2, dim=1)
        return mean, log_std


class MultiScaleFlow(nn.Module):
    """Glow/RealNVP multi-scale architecture on images in model space ``(B, C, H, W)``.

    Arguments:
        shape: image shape (C, H, W), H and W divisible by ``2**levels``.
        levels: number of scales.
        steps: actnorm → 1×1 conv → affine coupling steps per scale.
        hidden: coupling conv channels.
        ctx_dim: size of the class embedding (0 for none).

    References:
        Kingma & Dhariwal, "Glow", 2018, arXiv:1807.03039 (figure 2).
    """

    def __init__(self, shape: tuple[int, ...], levels: int, steps: int, hidden: int, ctx_dim: int) -> None:
        super().__init__()
        c, h, w = shape
        self.blocks = nn.ModuleList()
        self.priors = nn.ModuleList()
        self.z_shapes: list[tuple[int, int, int]] = []
        for level in range(levels):
            c, h, w = 4 * c, h // 2, w // 2
            layers: list[Bijection] = [Squeeze()]
            for _ in range(steps):
                layers += [ActNorm(c), InvertibleLinear(c), AffineCoupling(c, hidden, image=True, ctx_dim=ctx_dim)]
            self.blocks.append(Chain(layers))
            if level < levels - 1:
                out = c // 2
                self.priors.append(SplitPrior(c - out, out, ctx_dim))
                self.z_shapes.append((out, h, w))
                c -= out
            else:
                self.priors.append(TopPrior((c, h, w), ctx_dim))
                self.z_shapes.append((c, h, w))

    def forward(self, v: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latent ``(B, D)`` (factored-out pieces then the top, flattened) and ``log p(v)`` ``(B,)`` in nats."""
        h, total, zs = v, v.new_zeros(v.shape[0]), []
        last = len(self.blocks) - 1
        for level, (block, prior) in enumerate(zip(self.blocks, self.priors, strict=True)):
            h, ld = block(h, ctx)
            total = total + ld
            if level < last:
                keep = h.shape[1] - self.z_shapes[level][0]
                h, z = h[:, :keep], h[:, keep:]
                mean, log_std = prior(h, ctx)
            else:
                z = h
                mean, log_std = prior(h.shape[0], ctx)
            total = total + gaussian_log_prob(z, mean, log_std).flatten(1).sum(1)
            zs.append(z.flatten(1))
        return torch.cat(zs, dim=1), total

    def inverse(self, n: int, ctx: Tensor | None = None, z: Tensor | None = None, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
        """Images in model space from latents ``z`` ``(n, D)``, or from the prior at ``temperature``."""
        like = cast(TopPrior, self.priors[-1]).params
        pieces = list(z.split([math.prod(s) for s in self.z_shapes], dim=1)) if z is not None else None
        h: Tensor | None = None
        for level in reversed(range(len(self.blocks))):
            prior, shape = self.priors[level], self.z_shapes[level]
            mean, log_std = prior(n, ctx) if h is None else prior(h, ctx)
            if pieces is not None:
                zl = pieces[level].reshape(n, *shape)
            else:
                zl = mean + temperature * log_std.exp() * _noise((n, *shape), generator, like)
            h = zl if h is None else torch.cat([h, zl], dim=1)
            h = cast(Chain, self.blocks[level]).inverse(h, ctx)
        assert h is not None
        return h


class VectorFlow(nn.Module):
    """A flow on vectors ``(B, D)`` with a standard-normal base: ``steps`` × (actnorm → layer → reverse).

    Arguments:
        dims: vector size D (at least 2).
        steps: number of layers.
        hidden: MLP conditioner width.
        layer: ``spline``, ``affine`` or ``maf``.
        bins: spline bins.
        tail_bound: spline interval half-width.
        ctx_dim: size of a context vector (0 for none).
    """

    _anchor: Tensor

    def __init__(self, dims: int, steps: int, hidden: int, layer: str, bins: int, tail_bound: float,
                 ctx_dim: int) -> None:
        super().__init__()
        self.dims = dims
        layers: list[Bijection] = []
        for _ in range(steps):
            layers.append(ActNorm(dims))
            if layer == "spline":
                layers.append(SplineCoupling(dims, hidden, bins, tail_bound, ctx_dim))
            elif layer == "affine":
                layers.append(AffineCoupling(dims, hidden, image=False, ctx_dim=ctx_dim))
            else:
                layers.append(MAF(dims, hidden, ctx_dim))
            layers.append(Reverse())
        self.chain = Chain(layers)
        self.register_buffer("_anchor", torch.zeros(()))

    def forward(self, v: Tensor, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latent ``(B, D)`` and ``log p(v)`` ``(B,)`` in nats."""
        z, ld = self.chain(v, ctx)
        return z, ld + gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)

    def inverse(self, n: int, ctx: Tensor | None = None, z: Tensor | None = None, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
        """Vectors from latents ``z`` ``(n, D)``, or from the base at ``temperature``."""
        if z is None:
            z = temperature * _noise((n, self.dims), generator, self._anchor)
        return self.chain.inverse(z, ctx)


class VariationalDequantizer(nn.Module):
    """Learned dequantization noise ``u = σ(μ(x) + e^{s(x)} ε)``, ``ε ~ N(0, I)``, a logit-normal q(u | x).

    Arguments:
        channels: image channels C.
        hidden: conv channels.
        ctx_dim: size of the class embedding (0 for none).

    References:
        Ho et al., "Flow++", 2019, arXiv:1902.00275 (section 3.1).
    """

    def __init__(self, channels: int, hidden: int, ctx_dim: int) -> None:
        super().__init__()
        self.net = ConvConditioner(channels, 2 * channels, hidden, ctx_dim)

    def forward(self, x: Tensor, eps: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        """Noise ``u`` in (0, 1) and ``log q(u | x)`` ``(B,)`` for ``uint8`` images ``x`` and normal ``eps``."""
        mean, log_std = self.net(to_model(x).to(eps.dtype), ctx).chunk(2, dim=1)
        a = mean + log_std.exp() * eps
        # log q(u) = log N(ε) - log|da/dε| - log|du/da|, du/da = σ(a)(1 - σ(a))
        log_q = -0.5 * (eps.pow(2) + LOG_2PI) - log_std - F.logsigmoid(a) - F.logsigmoid(-a)
        return torch.sigmoid(a), log_q.flatten(1).sum(1)


@register_model("flow")
class Flow(GenerativeModel):
    """Normalizing flow for 8-bit images (multi-scale Glow) or vectors (spline / affine coupling, MAF).

    ``loss`` is the negative log-likelihood in nats per dimension (for images the negative dequantization bound);
    ``encode``/``decode`` map data to latents and back; ``sample`` takes a ``temperature``.
    """

    config_cls = FlowConfig
    data_forms = ("image", "vector", "table")
    exact_likelihood = True
    likelihood_bound = True
    #: log-determinants summed over many layers: bf16 autocast diverged on tables (inf loss at step 2)
    bf16_auto = False
    latent_space = True
    #: the latents are not iid standard normal (learned, split priors): walk between them in straight lines
    latent_path = "linear"
    sample_options_cls = FlowSampleOptions
    #: vectors: exact density; images: a (dequantization) lower bound on log P of the 8-bit data
    likelihood_by_form: ClassVar[dict[str, Likelihood]] = {"image": "bound", "vector": "exact", "table": "bound"}
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "grad_clip": 100.0}

    def __init__(self, config: FlowConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        k = spec.num_classes if config.conditional else 0
        self.emb = class_embedding(k, config.class_dim)
        ctx_dim = config.class_dim if self.emb is not None else 0
        self.dequantizer: VariationalDequantizer | None = None
        self.net: MultiScaleFlow | VectorFlow
        if spec.form == "image":
            c, h, w = spec.shape
            if h % 2**config.levels or w % 2**config.levels:
                raise ConfigError(f"{h}x{w} images do not halve {config.levels} times; lower --levels or pass "
                                  f"--size a multiple of {2**config.levels}")
            self.net = MultiScaleFlow((c, h, w), config.levels, config.steps, config.hidden, ctx_dim)
            if config.dequantization == "variational":
                self.dequantizer = VariationalDequantizer(c, config.dequant_hidden, ctx_dim)
        else:
            if spec.dims < 2:
                raise ConfigError(f"vector flows need at least 2 dimensions, the data has {spec.dims}")
            if spec.form == "table":
                self.layout = TableLayout.of(spec)
                self._cats = [(b.offset, b.width) for b in self.layout.cats]
            self.net = VectorFlow(spec.dims, config.steps, config.hidden, config.vector_layer, config.bins,
                                  config.tail_bound, ctx_dim)

    @property
    def _image(self) -> bool:
        return self.spec.form == "image"

    def _ctx(self, y: Tensor | None) -> Tensor | None:
        return None if self.emb is None or y is None else self.emb(y)

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # -- flow in model space -------------------------------------------------------------------------
    def transform(self, v: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Model-space data ``v`` → latent ``z`` ``(B, D)`` and ``log p(v)`` ``(B,)`` in nats."""
        return self.net(v, self._ctx(cond if self.conditional else None))

    def inverse_transform(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """Latent ``z`` ``(B, D)`` → model-space data (images in [-1, 1], vectors as they are)."""
        return self.net.inverse(z.shape[0], self._ctx(cond if self.conditional else None), z=z)

    def _to_data(self, v: Tensor) -> Tensor:
        if self._image:
            return ((v + 1.0) * 128.0).floor().clamp(0, 255).to(torch.uint8)  # inverse of dequantize
        return v.float()

    def encode(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Latents ``(B, D)`` of data ``x`` (images are dequantized to their bins' centres, ``u = 1/2``)."""
        v = dequantize(x, torch.full_like(x, 0.5, dtype=self._dtype())) if self._image else x.to(self._dtype())
        return self.transform(v, cond)[0]

    def decode(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """Data (``uint8`` images, ``float32`` vectors, or table rows with hard categories) from latents ``z``
        ``(B, D)``."""
        out = self._to_data(self.inverse_transform(z, cond))
        return self.layout.harden(out) if self.spec.form == "table" else out

    def _bound(self, x: Tensor, y: Tensor | None, noise: Tensor) -> Tensor:
        """One-sample dequantization bound on ``log P(x)`` (nats, ``(B,)``) for ``uint8`` images."""
        ctx = self._ctx(y)
        if self.dequantizer is None:
            u, log_q = noise, noise.new_zeros(x.shape[0])
        else:
            u, log_q = self.dequantizer(x, noise, ctx)
        _, log_p = self.net(dequantize(x, u).to(noise.dtype), ctx)
        return log_p - log_q + self.spec.dims * DEQUANT_LOG_BIN

    # -- contract ----------------------------------------------------------------------------------
    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        y = batch.y if self.conditional else None
        d = self.spec.dims
        if self._image:
            c, h, w = self.spec.shape
            noise = batch.rand(c, h, w) if self.dequantizer is None else batch.randn(c, h, w)
            lp = self._bound(batch.x, y, noise.to(self._dtype()))
            nll = -lp.mean()
            value = float(nll.detach())
            return nll / d, {"bpd": value / (d * math.log(2))}
        if self.spec.form == "table":
            v, log_q = argmax_lift(batch.x.to(self._dtype()), self._cats, batch.randn(d).to(self._dtype()))
            lp = self.net(v, self._ctx(y))[1] - log_q
        else:
            lp = self.net(batch.x.to(self._dtype()), self._ctx(y))[1]
        nll = -lp.mean()
        value = float(nll.detach())
        return nll / d, {"nll": value}

    @torch.no_grad()
    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Exact log-density of vectors, or for ``uint8`` images the dequantization lower bound on ``log P(x)``
        with ``eval_samples`` importance samples (fixed seed, so deterministic), in nats per example."""
        y = cond if self.conditional else None
        if self.spec.form == "table":  # the bound log P(categories) + log p(numbers) ≥ E_q[log p(v) - log q(v|x)]
            g = torch.Generator(device=x.device).manual_seed(0)
            xs = x.to(self._dtype())
            draws = []
            for _ in range(self.config.eval_samples):
                v, log_q = argmax_lift(xs, self._cats, torch.randn(xs.shape, generator=g, device=x.device).to(xs))
                draws.append(self.net(v, self._ctx(y))[1] - log_q)
            return torch.logsumexp(torch.stack(draws), dim=0) - math.log(len(draws))
        if not self._image:
            return self.net(x.to(self._dtype()), self._ctx(y))[1]
        g = torch.Generator(device=x.device).manual_seed(0)
        k = self.config.eval_samples
        draw = torch.rand if self.dequantizer is None else torch.randn
        lw = [self._bound(x, y, draw(x.shape, generator=g, device=x.device).to(self._dtype())) for _ in range(k)]
        return torch.logsumexp(torch.stack(lw), dim=0) - math.log(k)

    @torch.no_grad()
    def sample(self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:
        """``n`` samples (``uint8`` images or ``float32`` vectors); ``temperature`` scales the prior's std."""
        cond = self.check_cond(n, cond, generator)
        out = self._to_data(self.net.inverse(n, self._ctx(cond), temperature=temperature, generator=generator))
        if self.spec.form == "table":  # a category is the argmax of its lifted block
            return self.layout.set_label(self.layout.harden(out), cond)
        return out

    # -- latent space --------------------------------------------------------------------------------
    def _labels_for(self, n: int, cond: Tensor | None) -> Tensor | None:
        if not self.conditional:
            return None
        if cond is None:
            raise CapabilityError("this flow is class-conditional: give the labels (--label) to encode or decode, "
                                  "or train it with --no-conditional")
        return self.check_cond(n, cond, None)

    @torch.no_grad()
    def to_latent(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """The flow's latent ``(B, D)`` of data ``x`` (:meth:`encode`; a conditional flow needs the labels)."""
        return self.encode(x.to(self.device), self._labels_for(x.shape[0], cond))

    @torch.no_grad()
    def from_latent(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """Data from latents (:meth:`decode`; a conditional flow needs labels)."""
        return self.decode(z.to(self.device), self._labels_for(z.shape[0], cond))
