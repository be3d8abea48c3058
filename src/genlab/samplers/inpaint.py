"""RePaint-style inpainting with any resampling-capable sampler.

At every reverse step the known region is replaced by a fresh forward sample of the given image at the new
noise level, ``x_prev = m ⊙ q(x_prev | x_0^known) + (1 - m) ⊙ step(x_t)``, and each step is repeated
``resample`` times by jumping forward again with ``q(x_t | x_prev)`` so the generated region harmonises with the
known one (jump length 1). A multistep sampler's history is dropped after every such jump, so DPM-Solver++(2M)
takes a first-order step there.

References:
    Lugmayr et al., "RePaint: Inpainting using Denoising Diffusion Probabilistic Models", 2022, arXiv:2201.09865
    (Algorithm 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.errors import ConfigError
from genlab.samplers.base import Denoiser, Sampler, gaussian, progress


def repaint(sampler: Sampler, denoise: Denoiser, known: Tensor, keep: Tensor, steps: int | None = None,
            resample: int = 1, generator: torch.Generator | None = None, show_progress: bool = True) -> Tensor:
    """Fill the region where ``keep`` is False, conditioned on ``known`` elsewhere.

    Arguments:
        sampler: any sampler (DDPM as in the paper, DDIM, DPM-Solver++).
        denoise: the model's ``(x_t, t) -> (x̂_0, ε̂)``.
        known: images in model space ``(B, C, H, W)``.
        keep: boolean mask broadcastable to ``known``; True where the pixel is given.
        steps: reverse steps (the sampler's default when None).
        resample: times each step is done (``U`` in the paper); 1 means no resampling.
        generator: source of all noise.
        show_progress: draw a progress bar when stderr is a terminal.

    Returns:
        Images in model space; pixels where ``keep`` holds equal ``known`` exactly.

    Raises:
        ConfigError: for ``resample < 1``.
    """
    if resample < 1:
        raise ConfigError(f"--resample must be at least 1, got {resample}")
    sched = sampler.schedule
    keep = keep.to(known.device).expand_as(known)
    ts = sampler.timesteps(steps)
    sampler.reset()
    x = gaussian(known.shape, known, generator)
    with progress(len(ts) * resample, f"inpaint {type(sampler).__name__}", show_progress) as advance:
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            for u in range(resample):
                x0, eps = denoise(x, t)
                unknown = sampler.step(x0, eps, t, t_prev, x, generator)
                given = known if t_prev < 0 else sched.add_noise(known, gaussian(known.shape, known, generator),
                                                                 t_prev)
                x_prev = torch.where(keep, given, unknown)
                if u + 1 < resample and t_prev >= 0:
                    x = sched.renoise(x_prev, gaussian(known.shape, known, generator), t_prev, t)  # q(x_t|x_prev)
                    sampler.reset()
                else:
                    x = x_prev
                advance()
                if t_prev < 0:
                    break
    return torch.where(keep, known, x)
