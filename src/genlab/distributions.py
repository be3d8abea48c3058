"""Likelihoods shared by the families: 8-bit data (discretized logistic, binarized Bernoulli) and table rows that
mix numbers with one-hot categories."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.data.images import to_model


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Log-probability (nats, per element) of 8-bit pixels under a logistic discretized to 256 bins.

    Pixel ``k`` sits at ``v = k / 127.5 - 1``; its bin is ``[v - 1/255, v + 1/255]`` and the edge bins extend to
    ±∞, so the 256 probabilities sum to exactly one.

    Arguments:
        x: ``uint8`` pixels.
        mean: logistic location in model space, same shape.
        log_scale: log of the logistic scale, same shape (clamped below at -7).

    References:
        Salimans et al., "PixelCNN++", 2017, arXiv:1701.05517 (eq. 2).
    """
    v = to_model(x)
    log_scale = log_scale.clamp(min=-7.0)
    inv_s = torch.exp(-log_scale)
    centered = v - mean
    plus = inv_s * (centered + 1.0 / 255.0)
    minus = inv_s * (centered - 1.0 / 255.0)
    log_cdf_plus = plus - F.softplus(plus)  # log σ(plus), for k = 0
    log_one_minus_cdf_min = -F.softplus(minus)  # log(1 - σ(minus)), for k = 255
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centered
    log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid)  # fallback when the bin mass underflows
    inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid - math.log(127.5))
    return torch.where(x == 0, log_cdf_plus, torch.where(x == 255, log_one_minus_cdf_min, inner))


def logistic_sample(mean: Tensor, log_scale: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Sample a logistic in model space (to be quantized to 8 bits)."""
    u = torch.rand(mean.shape, generator=generator, device=mean.device).clamp(1e-5, 1 - 1e-5)
    return mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """Log-probability (nats, per element) of binarized pixels (``k ≥ 128`` is on) under Bernoulli logits."""
    target = (x >= 128).to(logits.dtype)
    return -F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def mixed_log_prob(x: Tensor, out: Tensor, num: Tensor, cats: list[tuple[int, int]], log_scale: Tensor) -> Tensor:
    """Log-likelihood (nats, per row ``(B,)``) of rows mixing numbers and one-hot blocks: independent Gaussians
    ``N(x_j; out_j, e^{2 s_j})`` at the numeric positions ``num`` and categoricals ``softmax(out[block])`` at each
    one-hot block.

    Arguments:
        x: rows ``(B, D)``.
        out: parameters in the same layout ``(B, D)``: means at numbers, logits at blocks.
        num: positions of the numbers ``(n,)``.
        cats: ``(offset, width)`` of the one-hot blocks.
        log_scale: log standard deviation per number ``(n,)`` (or broadcastable).
    """
    lp = x.new_zeros(x.shape[0])
    if len(num):
        z = (x[:, num] - out[:, num]) * torch.exp(-log_scale)
        lp = lp - (0.5 * z.pow(2) + log_scale + 0.5 * math.log(2 * math.pi)).sum(1)
    for off, w in cats:
        lp = lp + (x[:, off : off + w] * F.log_softmax(out[:, off : off + w], dim=1)).sum(1)
    return lp


def sample_mixed(out: Tensor, num: Tensor, cats: list[tuple[int, int]], log_scale: Tensor | None,
                 generator: torch.Generator | None = None) -> Tensor:
    """Draw rows from :func:`mixed_log_prob`'s distribution: numbers ``out + e^s ε`` (the means when ``log_scale``
    is None), one one-hot draw from each block's softmax."""
    x = out.clone()
    dev = generator.device if generator is not None else out.device
    if len(num) and log_scale is not None:
        eps = torch.randn((out.shape[0], len(num)), generator=generator, device=dev).to(out)
        x[:, num] = out[:, num] + torch.exp(log_scale) * eps
    for off, w in cats:
        probs = F.softmax(out[:, off : off + w].float(), dim=1)
        k = torch.multinomial(probs.to(dev), 1, generator=generator).squeeze(1).to(out.device)
        x[:, off : off + w] = F.one_hot(k, w).to(out)
    return x
