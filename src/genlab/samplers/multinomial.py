"""Multinomial (categorical) diffusion over a shared noise schedule: forward marginals, posteriors with skipped
steps, KL terms and the ancestral step — for any one-hot block (table categories, a piano roll's cells, …).

With ``ᾱ_t`` of a :class:`~genlab.samplers.schedules.NoiseSchedule` (index ``-1`` = clean data),
``q(x_t | x_0) = Cat(ᾱ_t x_0 + (1 - ᾱ_t) / K)`` and, for ``s < t``,
``q(x_s | x_t, x_0) ∝ [(ᾱ_t/ᾱ_s) x_t + (1 - ᾱ_t/ᾱ_s) / K] ⊙ [ᾱ_s x_0 + (1 - ᾱ_s) / K]``; the reverse model plugs in
the network's ``x̂_0`` probabilities. At ``s = -1`` the second factor is ``x_0`` itself, so the same formula gives
the decoder ``p(x_0 | x_t)``. Everything is computed in log space; tensors are ``(B, K)``.

References:
    Hoogeboom et al., "Argmax Flows and Multinomial Diffusion", 2021, arXiv:2102.05379 (Sec. 5).
    Kotelnikov et al., "TabDDPM", 2023, arXiv:2209.15421 (multinomial diffusion for table categories).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.samplers.schedules import NoiseSchedule


class MultinomialDiffusion:
    """Categorical diffusion on one-hot blocks over ``schedule``'s ``ᾱ``.

    Arguments:
        schedule: the noise schedule (shared with the Gaussian part of a mixed model).
    """

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule

    def _ab(self, t: Tensor | int, like: Tensor) -> Tensor:
        """``ᾱ`` at ``t`` as a ``(B, 1)`` (or scalar) tensor like ``like``."""
        ab = self.schedule.alpha_bar_at(t).to(device=like.device, dtype=torch.float64)
        return ab.reshape(-1, 1) if ab.ndim else ab

    def log_marginal(self, log_x0: Tensor, t: Tensor | int) -> Tensor:
        """``log q(x_t | x_0)`` for ``x_0`` given as log-probabilities ``(B, K)``."""
        k = log_x0.shape[1]
        ab = self._ab(t, log_x0)
        return torch.logaddexp(log_x0.double() + torch.log(ab), torch.log1p(-ab.clamp(max=1 - 1e-12)) - math.log(k)
                               ).to(log_x0.dtype)

    def log_posterior(self, x_t: Tensor, log_x0: Tensor, t: Tensor | int, s: Tensor | int) -> Tensor:
        """``log q(x_s | x_t, x_0)`` (normalised), ``x_t`` one-hot, ``x_0`` as log-probabilities, ``s < t``."""
        k = x_t.shape[1]
        ratio = (self._ab(t, x_t) / self._ab(s, x_t)).clamp(max=1.0)
        lik = torch.log(ratio * x_t.double() + (1 - ratio) / k)  # q(x_t | x_s) as a function of x_s
        prior = self.log_marginal(log_x0, s).double()
        un = lik + prior
        return (un - torch.logsumexp(un, dim=1, keepdim=True)).to(log_x0.dtype)

    def kl(self, x_t: Tensor, x0: Tensor, log_x0_hat: Tensor, t: Tensor) -> Tensor:
        """``KL(q(x_{t-1} | x_t, x_0) ‖ p(x_{t-1} | x_t))`` per row ``(B,)``; at ``t = 0`` it is ``-log p(x_0 | x_t)``.

        Arguments:
            x_t: one-hot latents.
            x0: one-hot data.
            log_x0_hat: the network's log-probabilities of ``x_0``.
            t: integer timesteps ``(B,)``.
        """
        log_x0 = torch.log(x0.clamp(min=1e-30))
        log_q = self.log_posterior(x_t, log_x0, t, t - 1)
        log_p = self.log_posterior(x_t, log_x0_hat, t, t - 1)
        q = log_q.exp()
        return (q * (log_q - log_p)).sum(1)

    def prior_kl(self, x0: Tensor) -> Tensor:
        """``KL(q(x_{T-1} | x_0) ‖ uniform)`` per row ``(B,)``."""
        k = x0.shape[1]
        log_q = self.log_marginal(torch.log(x0.clamp(min=1e-30)), self.schedule.num_timesteps - 1)
        return (log_q.exp() * (log_q + math.log(k))).sum(1)

    @staticmethod
    def draw(log_probs: Tensor, uniform: Tensor) -> Tensor:
        """One-hot draws from ``Cat(exp(log_probs))`` given uniform noise of the same shape (Gumbel-max)."""
        g = -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-7)))
        return torch.nn.functional.one_hot((log_probs + g).argmax(1), log_probs.shape[1]).to(log_probs.dtype)

    def add_noise(self, x0: Tensor, t: Tensor | int, uniform: Tensor) -> Tensor:
        """Sample ``x_t ~ q(x_t | x_0)`` (one-hot in, one-hot out)."""
        return self.draw(self.log_marginal(torch.log(x0.clamp(min=1e-30)), t), uniform)

    def renoise(self, x_s: Tensor, s: int, t: int, uniform: Tensor) -> Tensor:
        """Sample ``q(x_t | x_s)`` for ``t > s`` (a forward jump, as inpainting resamples)."""
        k = x_s.shape[1]
        ratio = float(self.schedule.alpha_bar_at(t) / self.schedule.alpha_bar_at(s))
        return self.draw(torch.log(ratio * x_s + (1 - ratio) / k), uniform)

    def step(self, x_t: Tensor, log_x0_hat: Tensor, t: int, s: int, uniform: Tensor) -> Tensor:
        """Ancestral step ``x_s ~ p(x_s | x_t)`` (``s = -1`` gives data)."""
        return self.draw(self.log_posterior(x_t, log_x0_hat, t, s), uniform)
