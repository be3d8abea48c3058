"""Discrete-time Gaussian noise schedules, defined once: q(x_t | x_0), the posterior and prediction conversions.

Indexing: timesteps are ``t ∈ {0, …, T-1}``; ``alpha_bar[t] = Π_{s ≤ t} (1 - β_s)`` is the signal share of the
latent at index ``t`` (the DDPM paper's ``x_{t+1}``), and index ``-1`` stands for clean data (``ᾱ = 1``). All
schedule arithmetic is done in float64 and cast to the input's dtype at the end.

References:
    Ho et al., "Denoising Diffusion Probabilistic Models", 2020, arXiv:2006.11239.
    Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", 2021, arXiv:2102.09672 (cosine).
    Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", 2022, arXiv:2202.00512 (v).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from genlab.errors import ConfigError

ScheduleKind = Literal["linear", "cosine"]
Prediction = Literal["eps", "x0", "v"]


def linear_betas(num_timesteps: int) -> Tensor:
    """DDPM's linear β from 1e-4 to 0.02, rescaled so that T ≠ 1000 covers the same noise range.

    References:
        Ho et al., 2020, arXiv:2006.11239 (Sec. 4); Nichol & Dhariwal, 2021, arXiv:2102.09672 (rescaling).
    """
    scale = 1000.0 / num_timesteps
    return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule ``ᾱ(t) = cos²((t/T + s) / (1 + s) · π/2)``, β clipped at ``max_beta``.

    References:
        Nichol & Dhariwal, 2021, arXiv:2102.09672 (eq. 17).
    """
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A variance-preserving schedule ``q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I)`` over T discrete steps.

    Arguments:
        betas: ``(T,)`` float64 noise variances β_t in (0, 1).

    References:
        Ho et al., 2020, arXiv:2006.11239 (eqs. 4, 6, 7).
    """

    betas: Tensor

    @classmethod
    def make(cls, kind: ScheduleKind, num_timesteps: int) -> NoiseSchedule:
        """Build the ``linear`` or ``cosine`` schedule with ``num_timesteps`` steps.

        Raises:
            ConfigError: for an unknown kind or fewer than 2 steps.
        """
        if num_timesteps < 2:
            raise ConfigError(f"--num-timesteps must be at least 2, got {num_timesteps}")
        if kind == "linear":
            return cls(linear_betas(num_timesteps))
        if kind == "cosine":
            return cls(cosine_betas(num_timesteps))
        raise ConfigError(f"unknown noise schedule '{kind}'; choose linear or cosine")

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def alpha_bar(self) -> Tensor:
        """``(T,)`` float64 cumulative products ``ᾱ_t``."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    def alpha_bar_at(self, t: Tensor | int) -> Tensor:
        """``ᾱ`` at integer timesteps ``t`` (float64, same shape); ``t = -1`` gives 1 (clean data)."""
        t = torch.as_tensor(t, dtype=torch.long)
        ab = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar])
        return ab[(t + 1).cpu()]

    @staticmethod
    def _bcast(v: Tensor, like: Tensor) -> Tensor:
        """Per-example float64 values ``(B,)`` or a scalar → ``like``'s dtype/device, broadcastable to it."""
        v = v.to(device=like.device, dtype=like.dtype)
        return v.reshape(-1, *([1] * (like.ndim - 1))) if v.ndim else v

    def add_noise(self, x0: Tensor, eps: Tensor, t: Tensor | int) -> Tensor:
        """Sample ``q(x_t | x_0)``: ``x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε`` (eq. 4) for given noise ``ε``."""
        ab = self.alpha_bar_at(t)
        return self._bcast(ab.sqrt(), x0) * x0 + self._bcast((1 - ab).sqrt(), x0) * eps

    def renoise(self, x: Tensor, eps: Tensor, t_from: int, t_to: int) -> Tensor:
        """Sample ``q(x_{t_to} | x_{t_from})`` for ``t_to > t_from`` (a forward jump, as RePaint resamples)."""
        ratio = float(self.alpha_bar_at(t_to) / self.alpha_bar_at(t_from))
        return math.sqrt(ratio) * x + math.sqrt(1 - ratio) * eps

    def posterior(self, x0: Tensor, xt: Tensor, t: Tensor | int,
                  t_prev: Tensor | int | None = None) -> tuple[Tensor, Tensor]:
        """Mean and variance of ``q(x_{t_prev} | x_t, x_0)``, by default ``t_prev = t - 1``.

        ``μ̃ = √ᾱ_prev β'/(1-ᾱ_t) x_0 + √α' (1-ᾱ_prev)/(1-ᾱ_t) x_t`` and ``β̃ = (1-ᾱ_prev)/(1-ᾱ_t) β'`` with
        ``α' = ᾱ_t / ᾱ_prev = 1 - β'`` (eq. 7; with skipped steps as in arXiv:2102.09672 Sec. 4).

        Returns:
            (mean like ``x_t``, variance broadcastable to ``x_t``).
        """
        t = torch.as_tensor(t, dtype=torch.long)
        t_prev = t - 1 if t_prev is None else torch.as_tensor(t_prev, dtype=torch.long)
        ab, ab_prev = self.alpha_bar_at(t), self.alpha_bar_at(t_prev)
        a_step = ab / ab_prev
        b_step = 1 - a_step
        c0 = ab_prev.sqrt() * b_step / (1 - ab)
        ct = a_step.sqrt() * (1 - ab_prev) / (1 - ab)
        var = (1 - ab_prev) / (1 - ab) * b_step
        mean = self._bcast(c0, xt) * x0 + self._bcast(ct, xt) * xt
        return mean, self._bcast(var, xt)

    def predictions(self, out: Tensor, xt: Tensor, t: Tensor | int, prediction: Prediction,
                    clip: bool = False) -> tuple[Tensor, Tensor]:
        """Turn a network output in any parametrization into ``(x̂_0, ε̂)`` at ``x_t``.

        ``ε``: ``x̂_0 = (x_t - σ ε̂) / α``; ``x0``: ``ε̂ = (x_t - α x̂_0) / σ``; ``v = α ε - σ x_0``:
        ``x̂_0 = α x_t - σ v̂``, ``ε̂ = σ x_t + α v̂`` (``α = √ᾱ_t``, ``σ = √(1-ᾱ_t)``). With ``clip`` the
        data prediction is clamped to [-1, 1] and ε̂ recomputed from it so both stay consistent with ``x_t``.

        References:
            Salimans & Ho, 2022, arXiv:2202.00512 (Sec. 4, Appendix D).
        """
        ab = self.alpha_bar_at(t)
        a, s = self._bcast(ab.sqrt(), xt), self._bcast((1 - ab).sqrt(), xt)
        if prediction == "eps":
            x0, eps = (xt - s * out) / a, out
        elif prediction == "x0":
            x0, eps = out, (xt - a * out) / s
        else:
            x0, eps = a * xt - s * out, s * xt + a * out
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (xt - a * x0) / s
        return x0, eps

    def target(self, x0: Tensor, eps: Tensor, t: Tensor, prediction: Prediction) -> Tensor:
        """The regression target of a parametrization: ``ε``, ``x_0`` or ``v = √ᾱ ε - √(1-ᾱ) x_0``."""
        if prediction == "eps":
            return eps
        if prediction == "x0":
            return x0
        ab = self.alpha_bar_at(t)
        return self._bcast(ab.sqrt(), x0) * eps - self._bcast((1 - ab).sqrt(), x0) * x0

    def snr(self, t: Tensor | int) -> Tensor:
        """Signal-to-noise ratio ``ᾱ_t / (1 - ᾱ_t)`` (float64)."""
        ab = self.alpha_bar_at(t)
        return ab / (1 - ab)

    def respaced(self, steps: int) -> list[int]:
        """``steps`` distinct timesteps evenly spaced from T-1 down to 0 (descending).

        Raises:
            ConfigError: unless ``1 ≤ steps ≤ T``.
        """
        T = self.num_timesteps
        if not 1 <= steps <= T:
            raise ConfigError(f"--steps must be between 1 and the model's {T} training timesteps, got {steps}")
        if steps == 1:
            return [T - 1]
        ts = torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long().tolist()
        return list(dict.fromkeys(ts))
