"""Absorbing-state ("masked") diffusion on categorical data: the noise schedule, the weights of its continuous-time
variational bound, and the ancestral sampler, which also fills in given data (inpainting).

Forward process: each cell keeps its value with probability ``α(t)`` and becomes the mask value otherwise,
independently, with ``α(t) = 1 − t`` on ``t ∈ [0, 1]``. The reverse process unmasks cells: from time ``t`` to
``s < t`` a masked cell is revealed with probability ``(α(s) − α(t)) / (1 − α(t))`` and takes a value drawn from
the network's prediction of the clean cell; revealed cells never change again. The negative ELBO is
``∫₀¹ −α'(t) / (1 − α(t)) · E[Σ_{masked cells} −log p_θ(x_i | x_t)] dt`` (weight ``1 / t`` here).

References:
    Austin et al., "Structured Denoising Diffusion Models in Discrete State-Spaces" (D3PM), 2021, arXiv:2107.03006.
    Sahoo et al., "Simple and Effective Masked Diffusion Language Models" (MDLM), 2024, arXiv:2406.07524.
    Shi et al., "Simplified and Generalized Masked Diffusion for Discrete Data" (MD4), 2024, arXiv:2406.04329.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor

from genlab.samplers.base import progress

#: ``x_t -> logits (…, levels)`` of the clean value of every cell
Predictor = Callable[[Tensor], Tensor]


def alpha(t: Tensor) -> Tensor:
    """Probability that a cell is still unmasked at time ``t``: ``α(t) = 1 − t``."""
    return 1.0 - t


def elbo_weight(t: Tensor) -> Tensor:
    """``−α'(t) / (1 − α(t)) = 1 / t``, the weight of the masked cells' cross-entropy in the bound."""
    return 1.0 / t


def mask_cells(x: Tensor, t: Tensor, u: Tensor, mask_id: int) -> tuple[Tensor, Tensor]:
    """Forward process: ``(x_t, masked)`` with cell masked where the uniform noise ``u < 1 − α(t)``.

    Arguments:
        x: clean values ``(B, …)``.
        t: times ``(B,)`` in (0, 1].
        u: uniform noise shaped like ``x``.
        mask_id: the mask value.
    """
    p = (1.0 - alpha(t)).view(-1, *([1] * (x.dim() - 1)))
    masked = u < p
    return torch.where(masked, torch.full_like(x, mask_id), x), masked


def reveal_step(logits: Tensor, x: Tensor, t: float, s: float, mask_id: int,
                generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
    """One reverse step from time ``t`` to ``s < t``: each masked cell is revealed with probability
    ``(α(s) − α(t)) / (1 − α(t))``, taking a value drawn from ``softmax(logits / temperature)``."""
    masked = x == mask_id
    a_t, a_s = 1.0 - t, 1.0 - s
    p_reveal = 1.0 if s <= 0 else (a_s - a_t) / (1.0 - a_t)
    gen_device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=gen_device).to(x.device)
    reveal = masked & (u < p_reveal)
    probs = (logits.float() / max(temperature, 1e-6)).softmax(-1).reshape(-1, logits.shape[-1])
    draw = torch.multinomial(probs.to(gen_device), 1, generator=generator).view(x.shape).to(x.device)
    return torch.where(reveal, draw, x)


def unmask(predict: Predictor, x: Tensor, mask_id: int, steps: int, generator: torch.Generator | None = None,
           show_progress: bool = True, temperature: float = 1.0) -> Tensor:
    """Run the reverse process from ``x`` (mask values where cells are unknown, given values elsewhere, which stay
    as they are) over ``steps`` equal time steps from 1 to 0; every cell is revealed at the end.

    Starting from all-mask this samples the model; starting from partly given data it inpaints exactly under the
    model's reverse process (no resampling needed, unlike Gaussian RePaint).
    """
    ts = torch.linspace(1.0, 0.0, steps + 1).tolist()
    with progress(steps, "unmask", show_progress) as advance:
        for t, s in itertools.pairwise(ts):
            if not bool((x == mask_id).any()):
                break
            x = reveal_step(predict(x), x, t, s, mask_id, generator, temperature)
            advance()
    return x
