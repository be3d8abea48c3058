"""Autoregressive image model: gated PixelCNN (vertical + horizontal stacks, no blind spot), class-conditional.

``p(x) = Π_i Π_c p(x_{i,c} | x_{<i}, x_{i,<c}, y)`` over pixels ``i`` in raster order and channels ``c`` (R, G, B);
each conditional is a 256-way softmax or a mixture of discretized logistics. ``log_prob`` is exact (nats of the
8-bit data). Sampling goes sub-pixel by sub-pixel and caches every layer's features: each row of the vertical stack
is computed once from the cached rows above it, each pixel of the horizontal stack once from the cached pixels to
its left, so a sub-pixel costs O(layers) small convolutions instead of a full pass (``cached=False`` runs the full
network for every sub-pixel; both give identical samples). ``last_sample_stats`` records the speed.

References:
    van den Oord et al., "Pixel Recurrent Neural Networks", 2016, arXiv:1601.06759.
    van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016, arXiv:1606.05328.
    Salimans et al., "PixelCNN++", 2017, arXiv:1701.05517 (discretized logistic mixture).
    Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models", 2017, arXiv:1704.06001.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.config import check
from genlab.core import Batch, DataSpec, GenerativeModel, register_model
from genlab.data.images import to_model, to_uint8
from genlab.distributions import discretized_logistic_log_prob
from genlab.nn.conv import class_embedding
from genlab.nn.masked import HorizontalConv, VerticalConv, channel_groups, down_shift


@dataclass(frozen=True)
class PixelCNNConfig:
    """Gated PixelCNN hyper-parameters.

    Arguments:
        hidden: feature channels of each stack (at least the number of image channels).
        layers: gated layers.
        kernel: odd kernel size k; the vertical stack sees k//2 + 1 rows × k columns, the horizontal k//2 + 1 pixels.
        output: ``softmax`` (256-way categorical per channel) or ``logistic`` (discretized logistic mixture).
        mixtures: mixture components for ``logistic``.
        conditional: condition on the class label when the data has labels.
        class_dim: size of the class embedding.
    """

    hidden: int = 64
    layers: int = 8
    kernel: int = 5
    output: Literal["softmax", "logistic"] = "softmax"
    mixtures: int = 5
    conditional: bool = True
    class_dim: int = 16

    def __post_init__(self) -> None:
        check(self.hidden >= 3, "--hidden must be at least 3")
        check(self.layers >= 1, "--layers must be at least 1")
        check(self.kernel >= 3 and self.kernel % 2 == 1, f"--kernel must be odd and >= 3, got {self.kernel}")
        check(self.mixtures >= 1, "--mixtures must be at least 1")


@dataclass(frozen=True)
class PixelCNNSampleOptions:
    """Sampling options of PixelCNN.

    Arguments:
        cached: compute each layer's features once per row / pixel from cached ones (same samples as the uncached
            loop, much faster); False recomputes the whole network for every sub-pixel.
    """

    cached: bool = True


def _gate(p: Tensor) -> Tensor:
    a, b = p.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)  # gated activation, eq. 2 of arXiv:1606.05328


class GatedLayer(nn.Module):
    """One gated layer of both stacks; the first layer reads the image (mask A), later ones the features (mask B).

    Arguments:
        in_ch: input channels (image channels C for the first layer, ``hidden`` after).
        hidden: feature channels.
        channels: image channels C (the number of channel groups).
        kernel: odd kernel size.
        first: whether this is the first layer.
        ctx_dim: size of the class embedding (0 for none).
    """

    def __init__(self, in_ch: int, hidden: int, channels: int, kernel: int, first: bool, ctx_dim: int) -> None:
        super().__init__()
        self.first = first
        half = kernel // 2 + 1
        in_groups = torch.arange(channels) if first else channel_groups(hidden, channels)
        groups = channel_groups(hidden, channels)
        self.v = VerticalConv(in_ch, 2 * hidden, half, kernel)
        self.v_to_h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h = HorizontalConv(in_ch, 2 * hidden, half, in_groups, torch.cat([groups, groups]),
                                "A" if first else "B")
        self.h_out = HorizontalConv(hidden, hidden, 1, groups, groups, "B")
        self.ctx = nn.Linear(ctx_dim, 4 * hidden) if ctx_dim else None

    def vertical(self, v: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        """Next vertical features and this layer's vertical → horizontal contribution (both see rows above only)."""
        pre = self.v(v)  # (B, 2h, H, W)
        if self.first:
            pre = down_shift(pre)  # row i now sees rows < i
        return self._from_pre(pre, ctx)

    def _from_pre(self, pre: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        cv = ch = 0.0
        if self.ctx is not None and ctx is not None:
            cv, ch = (t[:, :, None, None] for t in self.ctx(ctx).chunk(2, dim=1))
        return _gate(pre + cv), self.v_to_h(pre) + ch

    def vertical_row(self, window: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
        """One row of :meth:`vertical` from the rows its kernel covers, ``(B, in, kernel_h, W)`` (for the first
        layer: the ``kernel_h`` rows above it), without recomputing the rest of the image."""
        pre = F.conv2d(F.pad(window, self.v.pads[:2]), self.v.weight, self.v.bias)  # (B, 2h, 1, W)
        return self._from_pre(pre, ctx)

    def horizontal(self, h: Tensor, from_v: Tensor) -> Tensor:
        """Next horizontal features from the current ones and the vertical contribution."""
        out = self.h_out(_gate(self.h(h) + from_v))
        return out if self.first else h + out

    def horizontal_pixel(self, window: Tensor, from_v: Tensor) -> Tensor:
        """One pixel of :meth:`horizontal` from the pixels its kernel covers, ``(B, in, 1, kernel_w)`` (the last one
        is the current pixel), and the vertical contribution there ``(B, 2h, 1, 1)``."""
        pre = F.conv2d(window, self.h.weight * self.h.mask, self.h.bias)  # (B, 2h, 1, 1)
        out = self.h_out(_gate(pre + from_v))
        return out if self.first else window[..., -1:] + out


class GatedPixelCNNNet(nn.Module):
    """The network: image in model space ``(B, C, H, W)`` → per-channel output parameters ``(B, C, P, H, W)``.

    Arguments:
        channels: image channels C.
        hidden: feature channels.
        layers: gated layers.
        kernel: odd kernel size.
        params: output parameters per channel P (256 logits, or 3 × mixtures).
        ctx_dim: size of the class embedding (0 for none).
    """

    def __init__(self, channels: int, hidden: int, layers: int, kernel: int, params: int, ctx_dim: int) -> None:
        super().__init__()
        self.channels, self.params = channels, params
        self.layers = nn.ModuleList(GatedLayer(channels if i == 0 else hidden, hidden, channels, kernel, i == 0,
                                               ctx_dim) for i in range(layers))
        groups = channel_groups(hidden, channels)
        self.head1 = HorizontalConv(hidden, hidden, 1, groups, groups, "B")
        self.head2 = HorizontalConv(hidden, channels * params, 1, groups,
                                    torch.arange(channels).repeat_interleave(params), "B")

    def vertical(self, x: Tensor, ctx: Tensor | None) -> list[Tensor]:
        """Per layer, the vertical stack's contribution to the horizontal stack ``(B, 2h, H, W)``."""
        v, out = x, []
        for layer in cast(Iterable[GatedLayer], self.layers):
            v, to_h = layer.vertical(v, ctx)
            out.append(to_h)
        return out

    def horizontal(self, x: Tensor, from_v: list[Tensor]) -> Tensor:
        """Output parameters ``(B, C, P, H, W)`` from the image and the vertical contributions."""
        h = x
        for layer, fv in zip(cast(Iterable[GatedLayer], self.layers), from_v, strict=True):
            h = layer.horizontal(h, fv)
        out = self.head2(F.relu(self.head1(F.relu(h))))
        return out.view(x.shape[0], self.channels, self.params, *x.shape[2:])

    def forward(self, x: Tensor, ctx: Tensor | None = None) -> Tensor:
        return self.horizontal(x, self.vertical(x, ctx))


@register_model("pixelcnn")
class PixelCNN(GenerativeModel):
    """Gated PixelCNN over 8-bit images with an exact likelihood; ``loss`` is the NLL in nats per dimension."""

    config_cls = PixelCNNConfig
    exact_likelihood = True
    sample_options_cls = PixelCNNSampleOptions
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "grad_clip": 1.0}

    def __init__(self, config: PixelCNNConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        c = spec.shape[0]
        k = spec.num_classes if config.conditional else 0
        self.emb = class_embedding(k, config.class_dim)
        ctx_dim = config.class_dim if self.emb is not None else 0
        params = 256 if config.output == "softmax" else 3 * config.mixtures
        self.net = GatedPixelCNNNet(c, max(config.hidden, c), config.layers, config.kernel, params, ctx_dim)
        #: timing of the last ``sample`` call: seconds, sub-pixels generated per second, cached or not
        self.last_sample_stats: dict[str, float] = {}

    def _ctx(self, y: Tensor | None) -> Tensor | None:
        return None if self.emb is None or y is None or not self.conditional else self.emb(y)

    def _inp(self, x: Tensor) -> Tensor:
        return to_model(x).to(self.net.head2.weight.dtype)  # uint8 → [-1, 1] in the net's dtype

    def _element_log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        """``log p`` of each ``uint8`` element of ``x`` ``(..., C, ...)`` under output parameters ``out``."""
        if self.config.output == "softmax":
            return torch.log_softmax(out, dim=2).gather(2, x.long().unsqueeze(2)).squeeze(2)  # (B, C, H, W)
        logit_pi, mean, log_scale = out.chunk(3, dim=2)  # each (B, C, K, H, W)
        lp = discretized_logistic_log_prob(x.unsqueeze(2).expand_as(mean), mean, log_scale)
        return torch.logsumexp(torch.log_softmax(logit_pi, dim=2) + lp, dim=2)

    def pixel_log_probs(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """``log p(x_{i,c} | everything before)`` for every element, ``(B, C, H, W)`` in nats."""
        return self._element_log_prob(x, self.net(self._inp(x), self._ctx(cond)))

    # -- contract ----------------------------------------------------------------------------------
    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        lp = self.pixel_log_probs(batch.x, batch.y).flatten(1).sum(1)
        nll = -lp.mean()
        d = self.spec.dims
        return nll / d, {"bpd": float(nll.detach()) / (d * math.log(2))}

    @torch.no_grad()
    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Exact ``log P(x)`` in nats per example of ``uint8`` images."""
        return self.pixel_log_probs(x, cond).flatten(1).sum(1)

    def _draw(self, out: Tensor, generator: torch.Generator | None) -> Tensor:
        """Sample ``uint8`` values ``(n,)`` from output parameters ``(n, P)`` of one sub-pixel."""
        n = out.shape[0]
        dev = generator.device if generator is not None else out.device
        u = torch.rand((n, 1), generator=generator, device=dev).to(out)
        if self.config.output == "softmax":
            cdf = torch.softmax(out.double(), dim=1).cumsum(1)
            return (cdf < u.double()).sum(1).clamp(max=255).to(torch.uint8)  # inverse-CDF sampling
        logit_pi, mean, log_scale = out.chunk(3, dim=1)
        cdf = torch.softmax(logit_pi.double(), dim=1).cumsum(1)
        k = (cdf < u.double()).sum(1, keepdim=True).clamp(max=mean.shape[1] - 1)
        m, s = mean.gather(1, k)[:, 0], log_scale.clamp(min=-7.0).gather(1, k)[:, 0]
        u2 = torch.rand((n,), generator=generator, device=dev).to(out).clamp(1e-5, 1 - 1e-5)
        return to_uint8(m + s.exp() * (torch.log(u2) - torch.log1p(-u2)))

    def _sample_cached(self, x: Tensor, ctx: Tensor | None, generator: torch.Generator | None) -> None:
        """Fill ``x`` ``(n, C, H, W)`` in place, computing each layer's features once per row (vertical stack) and
        once per pixel (horizontal stack) from cached features of the rows and pixels before.

        References:
            Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models", 2017, arXiv:1704.06001.
        """
        n, c, h, w = x.shape
        layers = cast(list[GatedLayer], list(self.net.layers))
        kh, kw = layers[0].v.kernel_size[0], layers[0].h.kernel_size[1]
        dtype, dev = self.net.head2.weight.dtype, x.device
        width = [layer.v.in_channels for layer in layers]
        v_in = [torch.zeros(n, ch, h, w, dtype=dtype, device=dev) for ch in width[1:]]  # inputs of layers 1..L-1

        def rows(t: Tensor, lo: int, hi: int) -> Tensor:  # rows lo..hi-1, zero rows for lo < 0
            return F.pad(t[:, :, max(lo, 0) : hi], (0, 0, max(0, -lo), 0))

        for i in range(h):
            from_v = []
            for l, layer in enumerate(layers):
                if l == 0 and i == 0:  # the down-shift leaves zeros in row 0
                    v_out, to_h = layer._from_pre(torch.zeros(n, layer.v.out_channels, 1, w, dtype=dtype,
                                                              device=dev), ctx)
                elif l == 0:
                    v_out, to_h = layer.vertical_row(rows(self._inp(x), i - kh, i), ctx)  # the kh rows above
                else:
                    v_out, to_h = layer.vertical_row(rows(v_in[l - 1], i - kh + 1, i + 1), ctx)
                if l + 1 < len(layers):
                    v_in[l][:, :, i : i + 1] = v_out
                from_v.append(to_h)  # (n, 2h, 1, W)
            h_in = [torch.zeros(n, ch, 1, w, dtype=dtype, device=dev) for ch in width[1:]]
            for j in range(w):
                for ch in range(c):
                    feat = F.pad(self._inp(x[:, :, i : i + 1, max(0, j - kw + 1) : j + 1]), (max(0, kw - 1 - j), 0))
                    for l, layer in enumerate(layers):
                        if l > 0:
                            feat = F.pad(h_in[l - 1][..., max(0, j - kw + 1) : j + 1], (max(0, kw - 1 - j), 0))
                        out = layer.horizontal_pixel(feat, from_v[l][..., j : j + 1])  # (n, hidden, 1, 1)
                        if l + 1 < len(layers):
                            h_in[l][..., j : j + 1] = out
                    params = self.net.head2(F.relu(self.net.head1(F.relu(out))))
                    x[:, ch, i, j] = self._draw(params.view(n, c, -1)[:, ch], generator)

    @torch.no_grad()
    def sample(self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None,
               cached: bool = True) -> Tensor:
        """Generate ``n`` ``uint8`` images sub-pixel by sub-pixel (raster order, then channels)."""
        cond = self.check_cond(n, cond, generator)
        ctx = self._ctx(cond)
        c, h, w = self.spec.shape
        x = torch.zeros((n, c, h, w), dtype=torch.uint8, device=self.device)
        start = time.perf_counter()
        if cached:
            self._sample_cached(x, ctx, generator)
        else:
            for i in range(h):
                for j in range(w):
                    for ch in range(c):
                        x[:, ch, i, j] = self._draw(self.net(self._inp(x), ctx)[:, ch, :, i, j], generator)
        seconds = time.perf_counter() - start
        self.last_sample_stats = {"seconds": seconds, "subpixels_per_s": n * c * h * w / max(seconds, 1e-9),
                                  "images_per_s": n / max(seconds, 1e-9), "cached": float(cached)}
        return x
