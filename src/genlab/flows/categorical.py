"""Dequantisation of categories for continuous flows: the argmax threshold lift of one-hot blocks.

A category ``k`` of ``K`` becomes a point ``v ∈ R^K`` whose argmax is ``k``: draw ``u ~ N(0, I)``, keep
``v_k = u_k`` and push every other coordinate below it, ``v_i = v_k - softplus(v_k - u_i)``. The map ``u → v`` is
triangular with ``∂v_i/∂u_i = σ(v_k - u_i)``, so ``log q(v | k) = Σ_i log N(u_i) - Σ_{i≠k} log σ(v_k - u_i)``, and
since ``{v : argmax v = k}`` carries exactly ``P(k)`` of any density ``p``, ``log P(k) ≥ E_q[log p(v) - log q(v|k)]``.
Decoding is the argmax. Numbers pass through unchanged.

References:
    Hoogeboom et al., "Argmax Flows and Multinomial Diffusion", 2021, arXiv:2102.05379 (Sec. 4.2, thresholding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def argmax_lift(x: Tensor, blocks: Sequence[tuple[int, int]], noise: Tensor) -> tuple[Tensor, Tensor]:
    """Lift the one-hot ``blocks`` (``(offset, width)``) of rows ``x (B, D)`` to continuous values.

    Arguments:
        x: rows with one-hot blocks.
        blocks: ``(offset, width)`` of every one-hot block.
        noise: standard normal ``(B, D)`` (only the block positions are used).

    Returns:
        (``v (B, D)`` with each block's argmax at its category, ``log q(v | x) (B,)`` in nats).
    """
    v = x.clone()
    log_q = x.new_zeros(x.shape[0])
    for off, w in blocks:
        u = noise[:, off : off + w]
        hot = x[:, off : off + w] > 0.5  # (B, K)
        top = (u * hot).sum(1, keepdim=True)  # the winner keeps its draw
        below = top - F.softplus(top - u)
        v[:, off : off + w] = torch.where(hot, u, below)
        log_q = log_q - 0.5 * (u.pow(2) + LOG_2PI).sum(1) - torch.where(hot, 0.0, F.logsigmoid(top - u)).sum(1)
    return v, log_q
