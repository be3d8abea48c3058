"""Gaussian denoising with a diffusion model: start the reverse process from the noisy data itself, at the noise
level that matches it, and keep each step's clean-data estimate consistent with the observation.

Noisy data ``y = x + σ n`` in model space is, scaled by ``√ᾱ_t``, a draw of the forward process ``q(x_t | x)`` at the
timestep ``t*`` whose variance-exploding noise level ``σ_t = √((1 - ᾱ_t)/ᾱ_t)`` equals ``σ`` (the DDRM and SDEdit
starting point). From ``x_{t*} = √ᾱ_{t*} y`` the sampler runs down to clean data over ``steps`` timesteps spaced
evenly in ``[0, t*]``. At each step the model's estimate x̂_0 is fused with the observation as two Gaussian
estimates, ``x̂_0 ← (r y + x̂_0) / (1 + r)`` with ``r = c · σ_t² / σ²`` — the closed-form data-proximal step of
DiffPIR for an identity operator (its ``ρ_t = λ σ² / σ_t²`` with ``λ = 1/c``): at ``t*`` the two are weighted
``c : 1``, and the data term fades as the estimate sharpens. ``c = 0`` (the default) turns the data term off: for
pure denoising the start at the matching level already carries the observation (DDRM's steps for an identity
operator below the observation's noise level ignore it), and on mnist ``c = 1`` measured worse at every σ
(``benchmarks/RESULTS.md``): the fused estimate re-injects the observation's noise.

References:
    Kawar et al., "Denoising Diffusion Restoration Models", 2022, arXiv:2201.11793 (denoising as a start at σ_t = σ).
    Meng et al., "SDEdit", 2022, arXiv:2108.01073.
    Zhu et al., "Denoising Diffusion Models for Plug-and-Play Image Restoration" (DiffPIR), 2023, arXiv:2305.08995
    (eq. 13 and Algorithm 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.errors import ConfigError
from genlab.samplers.base import Denoiser, Sampler, progress


def matching_timestep(sampler: Sampler, sigma: float) -> int:
    """The timestep whose noise level ``√((1 - ᾱ_t)/ᾱ_t)`` is closest to ``sigma`` (model-space units)."""
    ab = sampler.schedule.alpha_bar
    level = ((1 - ab) / ab).sqrt()
    return int((level - sigma).abs().argmin())


def restore_timesteps(t_start: int, steps: int) -> list[int]:
    """``steps`` distinct timesteps spaced evenly from ``t_start`` down to 0 (fewer when ``t_start`` is small)."""
    n = max(1, min(steps, t_start + 1))
    return list(dict.fromkeys(torch.linspace(t_start, 0, n, dtype=torch.float64).round().long().tolist()))


def denoise_from(sampler: Sampler, denoise: Denoiser, noisy: Tensor, sigma: float, steps: int = 25,
                 consistency: float = 0.0, generator: torch.Generator | None = None,
                 show_progress: bool = True) -> Tensor:
    """Remove Gaussian noise of standard deviation ``sigma`` from ``noisy`` (both in model space).

    Arguments:
        sampler: the update rule (DDIM, DDPM or DPM-Solver++).
        denoise: the model's ``(x_t, t) -> (x̂_0, ε̂)``.
        noisy: observations ``y = x + σ n`` in model space, not clipped.
        sigma: σ in model space (``2 ×`` the σ of pixels on a [0, 1] scale).
        steps: reverse steps from the matching timestep down to clean data.
        consistency: ``c`` of the data step (module docstring); 0 = no data term.
        generator: source of the sampler's fresh noise (η > 0, DDPM).
        show_progress: draw a progress bar when stderr is a terminal.

    Returns:
        Clean estimates in model space, clamped to [-1, 1].

    Raises:
        ConfigError: for ``sigma <= 0``, ``steps < 1`` or ``consistency < 0``.
    """
    if not sigma > 0:
        raise ConfigError(f"--sigma must be positive, got {sigma}")
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {steps}")
    if consistency < 0:
        raise ConfigError(f"--consistency must be >= 0, got {consistency}")
    sched = sampler.schedule
    t_star = matching_timestep(sampler, sigma)
    ts = restore_timesteps(t_star, steps)
    sampler.reset()
    x = math.sqrt(float(sched.alpha_bar_at(t_star))) * noisy
    with progress(len(ts), f"denoise {type(sampler).__name__}", show_progress) as advance:
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            x0, eps = denoise(x, t)
            if consistency > 0:
                ab = float(sched.alpha_bar_at(t))
                r = consistency * (1 - ab) / ab / sigma**2
                x0 = ((r * noisy + x0) / (1 + r)).clamp(-1.0, 1.0)
                eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
            x = sampler.step(x0, eps, t, t_prev, x, generator)
            advance()
    return x.clamp(-1.0, 1.0)
