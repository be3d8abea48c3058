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

from torch import Tensor

from genlab.samplers.base import Denoiser, progress, sample_loop
from genlab.samplers.diffusion import DDIM
from genlab.samplers.schedules import NoiseSchedule


def ddim_invert(schedule: NoiseSchedule, denoise: Denoiser, x0: Tensor, steps: int | None = None,
                show_progress: bool = True) -> Tensor:
    """Latent noise ``x_T`` (at ``t = T - 1``) of clean data ``x0`` (model space) under deterministic DDIM.

    Arguments:
        schedule: the model's noise schedule.
        denoise: the model's ``(x_t, t) -> (x̂_0, ε̂)``, best without clipping x̂_0 (clipping is not invertible).
        x0: clean data in model space ``(B, …)``.
        steps: DDIM steps (the sampler's default when None); decode with the same number.
        show_progress: draw a progress bar when stderr is a terminal.

    Returns:
        ``x_T`` like ``x0``.
    """
    ts = DDIM(schedule).timesteps(steps)[::-1]  # ascending: 0, …, T-1
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
                show_progress: bool = True) -> Tensor:
    """Clean data (model space) from latent noise ``xt`` by deterministic DDIM (the inverse of :func:`ddim_invert`)."""
    return sample_loop(DDIM(schedule, eta=0.0), denoise, xt, steps, None, show_progress)
