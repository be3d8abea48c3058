"""DDIM inversion: run the deterministic DDIM update backwards, from an image to the noise that makes it.

With η = 0 a DDIM step is a first-order step of the probability-flow ODE, so running it from ``t_prev`` up to
``t`` with the model's predictions at the current point, ``x_t = √ᾱ_t x̂_0(x_prev) + √(1-ᾱ_t) ε̂(x_prev)``, maps an
image back to (approximately) the ``x_T`` the sampler started from. Tree-Ring watermark detection reads the key
out of that recovered noise.

References:
    Song et al., "Denoising Diffusion Implicit Models", 2021, arXiv:2010.02502 (Sec. 4.3, eq. 13).
    Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis", 2021, arXiv:2105.05233 (App. F).
    Wen et al., "Tree-Ring Watermarks", 2023, arXiv:2305.20030 (Sec. 3).
"""

from __future__ import annotations

import itertools
import math

from torch import Tensor

from genlab.samplers.base import Denoiser, progress
from genlab.samplers.schedules import NoiseSchedule


def ddim_invert(denoise: Denoiser, x0: Tensor, schedule: NoiseSchedule, steps: int = 50,
                show_progress: bool = False) -> Tensor:
    """The noise ``x_T`` (at t = T-1) whose deterministic DDIM sample is (approximately) ``x0``.

    Arguments:
        denoise: the model's ``(x_t, t) -> (x̂_0, ε̂)``.
        x0: images in model space ``(B, C, H, W)``.
        schedule: the model's noise schedule.
        steps: inversion steps over evenly spaced timesteps (more: a closer inverse).
        show_progress: draw a progress bar when stderr is a terminal.

    Returns:
        the recovered noise, like ``x0``.
    """
    ts = schedule.respaced(steps)[::-1]  # ascending: 0, …, T-1
    x = x0  # the data stands in for x at the first (nearly clean) level, as the sampler's last step returns x̂_0
    with progress(len(ts) - 1, "invert DDIM", show_progress) as advance:
        for t_prev, t in itertools.pairwise(ts):
            x0_hat, eps = denoise(x, t_prev)
            ab = float(schedule.alpha_bar_at(t))
            x = math.sqrt(ab) * x0_hat + math.sqrt(1 - ab) * eps
            advance()
    return x
