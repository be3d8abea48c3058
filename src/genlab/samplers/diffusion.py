"""Reverse-diffusion samplers: DDPM ancestral, DDIM with η, and DPM-Solver++(2M).

All three take the same ``step(x0, eps, t, t_prev, x, generator)``; ``t_prev = -1`` is the final step to data.

References:
    Ho et al., "Denoising Diffusion Probabilistic Models", 2020, arXiv:2006.11239.
    Song et al., "Denoising Diffusion Implicit Models", 2021, arXiv:2010.02502.
    Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models", 2022,
    arXiv:2211.01095.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.samplers.base import Sampler, gaussian, register_sampler
from genlab.samplers.schedules import NoiseSchedule


@register_sampler("ddpm")
class DDPM(Sampler):
    """Ancestral sampling from ``p(x_{t_prev} | x_t) = N(μ̃(x_t, x̂_0), β̃)``, the posterior with x̂_0 plugged in.

    With all T steps this is DDPM's Algorithm 2 (σ² = β̃); with fewer it is the respaced chain of
    arXiv:2102.09672 (Sec. 4). The final step returns the posterior mean (no noise).

    References:
        Ho et al., 2020, arXiv:2006.11239 (eqs. 6-7, Algorithm 2).
    """

    default_steps = None

    def mean_var(self, x0: Tensor, x: Tensor, t: int, t_prev: int) -> tuple[Tensor, Tensor]:
        """Mean and variance of the step's Gaussian."""
        return self.schedule.posterior(x0, x, t, t_prev)

    def step(self, x0: Tensor, eps: Tensor, t: int, t_prev: int, x: Tensor,
             generator: torch.Generator | None = None) -> Tensor:
        mean, var = self.mean_var(x0, x, t, t_prev)
        if t_prev < 0:
            return mean
        return mean + var.sqrt() * gaussian(x.shape, x, generator)


@register_sampler("ddim")
class DDIM(Sampler):
    """DDIM: ``x_prev = √ᾱ_prev x̂_0 + √(1 - ᾱ_prev - σ²) ε̂ + σ z`` with
    ``σ = η √((1-ᾱ_prev)/(1-ᾱ_t)) √(1 - ᾱ_t/ᾱ_prev)``.

    η = 0 is deterministic (the probability-flow ODE's first-order discretisation); η = 1 with all T steps has
    DDPM's ancestral step distribution.

    References:
        Song et al., 2021, arXiv:2010.02502 (eqs. 12 and 16).
    """

    def mean_var(self, x0: Tensor, eps: Tensor, t: int, t_prev: int) -> tuple[Tensor, float]:
        """Mean and variance σ² of the step's Gaussian."""
        ab, ab_prev = self._ab(t), self._ab(t_prev)
        var = self.eta**2 * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
        mean = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - var, 0.0)) * eps
        return mean, var

    def step(self, x0: Tensor, eps: Tensor, t: int, t_prev: int, x: Tensor,
             generator: torch.Generator | None = None) -> Tensor:
        mean, var = self.mean_var(x0, eps, t, t_prev)
        if var == 0.0:
            return mean
        return mean + math.sqrt(var) * gaussian(x.shape, x, generator)


@register_sampler("dpmpp_2m")
class DPMSolverPP2M(Sampler):
    """DPM-Solver++(2M): a second-order multistep solver of the diffusion ODE in data-prediction form.

    With ``λ = log(α/σ)``, ``h = λ_prev - λ_t`` and ``r = h_last / h``:
    ``x_prev = (σ_prev/σ_t) x_t - α_prev (e^{-h} - 1) D`` where ``D = (1 + 1/2r) x̂_0 - (1/2r) x̂_0^{last}``
    (``D = x̂_0`` on the first step). The last step to data returns x̂_0 (first order), as the paper's
    implementation does for few steps.

    References:
        Lu et al., 2022, arXiv:2211.01095 (Algorithm 2).
    """

    default_steps = 25

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0) -> None:
        super().__init__(schedule, eta)
        self._last: tuple[Tensor, float] | None = None

    def reset(self) -> None:
        self._last = None

    def timesteps(self, steps: int | None) -> list[int]:
        """Timesteps evenly spaced in log-SNR ``λ`` from ``λ(T-1)`` to ``λ(0)`` (the paper's recommendation for
        pixel-space models), each rounded to the nearest training timestep."""
        T = self.schedule.num_timesteps
        n = steps or min(self.default_steps or T, T)
        self.schedule.respaced(n)  # validates n
        lam = 0.5 * torch.log(self.schedule.alpha_bar) - 0.5 * torch.log1p(-self.schedule.alpha_bar)  # (T,) rising
        targets = torch.linspace(float(lam[-1]), float(lam[0]), n, dtype=torch.float64)
        ts = (lam[None, :] - targets[:, None]).abs().argmin(dim=1).tolist()
        return list(dict.fromkeys(ts))

    def _lam(self, t: int) -> float:
        ab = self._ab(t)
        return 0.5 * math.log(ab) - 0.5 * math.log1p(-ab)  # log(α/σ)

    def step(self, x0: Tensor, eps: Tensor, t: int, t_prev: int, x: Tensor,
             generator: torch.Generator | None = None) -> Tensor:
        if t_prev < 0:
            self._last = None
            return x0
        ab, ab_prev = self._ab(t), self._ab(t_prev)
        lam, lam_prev = self._lam(t), self._lam(t_prev)
        h = lam_prev - lam
        d = x0
        if self._last is not None:
            x0_last, h_last = self._last
            r = h_last / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_last
        self._last = (x0, h)
        sigma_ratio = math.sqrt((1 - ab_prev) / (1 - ab))
        return sigma_ratio * x - math.sqrt(ab_prev) * math.expm1(-h) * d
