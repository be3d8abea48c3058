"""Likelihoods of 8-bit data shared by the families (discretized logistic, binarized Bernoulli)."""

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
