"""DDIM inversion: the deterministic DDIM update run backwards, from data to the noise that DDIM maps back to it.

With ``η = 0`` DDIM is a discretisation of the probability-flow ODE, so its steps can be reversed: from ``x_t`` to a
noisier ``x_{t'}`` (``t' > t``) take ``x_{t'} = √ᾱ_{t'} x̂_0 + √(1 - ᾱ_{t'}) ε̂`` with ``(x̂_0, ε̂)`` predicted at
``(x_t, t)`` (on clean data, ``t = -1``, the noise is predicted at ``t = 0``). Running :func:`ddim_decode` over the
same timesteps undoes it up to the discretisation error (the prediction at ``x_t`` stands in for the one at
``x_{t'}``), which shrinks as ``steps`` grows; ``benchmarks/apps.py`` measures the round trip.

References:
    Song et al., "Denoising Diffusion Implicit Models", 2021, arXiv:2010.02502 (Sec. 4.3 and 5.4).
    Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis", 2021, arXiv:2105.05233 (App. F).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.samplers.base import Denoiser, progress, sample_loop
from genlab.samplers.diffusion import DDIM
from genlab.samplers.schedules import NoiseSchedule

#: a latent kept for decoding sits at the last timestep whose ᾱ is at least this: the cosine schedule's
#: ᾱ_{T-1} is ~2e-6, and the first DDIM step from there multiplies the model's noise-prediction error by
#: √(ᾱ_{t'}/ᾱ_{T-1}) ≈ 20 (an unclipped decode of a 3-minute mnist model gave pure noise, PSNR 4 dB)
LATENT_MIN_ALPHA_BAR = 1e-3


def latent_timestep(schedule: NoiseSchedule) -> int:
    """The timestep of the decodable latent: the last one with ``ᾱ_t ≥`` :data:`LATENT_MIN_ALPHA_BAR` (``T - 1``
    when every one has it). Its latent is nearly pure noise: in ``x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε`` the data's weight
    √ᾱ_t is about 0.03."""
    ok = (schedule.alpha_bar >= LATENT_MIN_ALPHA_BAR).nonzero()
    return int(ok.max()) if len(ok) else schedule.num_timesteps - 1


def _grid(schedule: NoiseSchedule, steps: int | None, top: int | None) -> list[int]:
    """Descending DDIM timesteps ending at ``top`` (the sampler's own grid to ``T - 1`` when None)."""
    if top is None:
        return DDIM(schedule).timesteps(steps)
    n = max(1, min(steps or DDIM.default_steps or schedule.num_timesteps, top + 1))
    return list(dict.fromkeys(torch.linspace(top, 0, n).round().long().tolist()))


def ddim_invert(schedule: NoiseSchedule, denoise: Denoiser, x0: Tensor, steps: int | None = None,
                show_progress: bool = True, top: int | None = None) -> Tensor:
    """Latent noise ``x_top`` (``t = T - 1`` by default) of clean data ``x0`` (model space) under deterministic DDIM.

    Arguments:
        schedule: the model's noise schedule.
        denoise: the model's ``(x_t, t) -> (x̂_0, ε̂)``, best without clipping x̂_0 (clipping is not invertible).
        x0: clean data in model space ``(B, …)``.
        steps: DDIM steps (the sampler's default when None); decode with the same number.
        show_progress: draw a progress bar when stderr is a terminal.
        top: the timestep to invert to (``T - 1`` when None; :func:`latent_timestep` for latents to decode).

    Returns:
        ``x_top`` like ``x0``.
    """
    ts = _grid(schedule, steps, top)[::-1]  # ascending: 0, …, top
    x, t_cur = x0, -1
    with progress(len(ts), "DDIM inversion", show_progress) as advance:
        for t_next in ts:
            ab_next = float(schedule.alpha_bar_at(t_next))
            x0_hat, eps = denoise(x, max(t_cur, 0))
            if t_cur < 0:
                x0_hat = x  # clean data is its own x̂_0; only the noise direction is predicted
            x = math.sqrt(ab_next) * x0_hat + math.sqrt(1.0 - ab_next) * eps
            t_cur = t_next
            advance()
    return x


def ddim_decode(schedule: NoiseSchedule, denoise: Denoiser, xt: Tensor, steps: int | None = None,
                show_progress: bool = True, top: int | None = None) -> Tensor:
    """Clean data (model space) from latent noise ``xt`` at timestep ``top`` (``T - 1`` when None) by deterministic
    DDIM over the grid of :func:`ddim_invert` (its inverse)."""
    return sample_loop(DDIM(schedule, eta=0.0), denoise, xt, steps, None, show_progress,
                       timesteps=_grid(schedule, steps, top))
