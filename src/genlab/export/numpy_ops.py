"""The numpy halves of genlab's samplers, for the torch-free runtime: the diffusion schedule arithmetic and the DDPM,
DDIM and DPM-Solver++(2M) updates, the multinomial diffusion posterior (table categories), and token decoding
filters (temperature, top-k, top-p, repetition penalty).

Each function mirrors its torch counterpart in :mod:`genlab.samplers` (``schedules``, ``diffusion``,
``multinomial``, ``decoding``) line by line; ``tests/export/test_numpy_ops.py`` (the multinomial posterior:
``tests/export/test_tabular_export.py``) checks that both give the same numbers. Schedule coefficients are
computed in float64 and applied to float32 arrays, as the torch versions do.

References:
    Ho et al., "Denoising Diffusion Probabilistic Models", 2020, arXiv:2006.11239.
    Song et al., "Denoising Diffusion Implicit Models", 2021, arXiv:2010.02502.
    Lu et al., "DPM-Solver++", 2022, arXiv:2211.01095.
    Holtzman et al., "The Curious Case of Neural Text Degeneration", 2020, arXiv:1904.09751.
    Fan et al., "Hierarchical Neural Story Generation", 2018, arXiv:1805.04833.
    Keskar et al., "CTRL", 2019, arXiv:1909.05858.
    Hoogeboom et al., "Argmax Flows and Multinomial Diffusion", 2021, arXiv:2102.05379.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from genlab.errors import ConfigError

#: network evaluations when no ``--steps`` is given (None = every training timestep)
DEFAULT_STEPS: dict[str, int | None] = {"ddpm": None, "ddim": 50, "dpmpp_2m": 25}


class Schedule:
    """``q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I)`` from the ``alpha_bar`` table an exported folder stores.

    Arguments:
        alpha_bar: ``(T,)`` cumulative signal shares ᾱ_t (float64); index -1 stands for clean data (ᾱ = 1).
    """

    def __init__(self, alpha_bar: Sequence[float]) -> None:
        self.alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
        self.num_timesteps = len(self.alpha_bar)

    def ab(self, t: int) -> float:
        """ᾱ at timestep ``t`` (1 for ``t = -1``)."""
        return 1.0 if t < 0 else float(self.alpha_bar[t])

    def predictions(self, out: np.ndarray, xt: np.ndarray, t: int, prediction: str,
                    clip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(x̂_0, ε̂)`` from a network output in the ``eps``, ``x0`` or ``v`` parametrization
        (:meth:`genlab.samplers.schedules.NoiseSchedule.predictions`)."""
        ab = self.ab(t)
        a, s = np.float32(math.sqrt(ab)), np.float32(math.sqrt(1 - ab))
        if prediction == "eps":
            x0, eps = (xt - s * out) / a, out
        elif prediction == "x0":
            x0, eps = out, (xt - a * out) / s
        else:
            x0, eps = a * xt - s * out, s * xt + a * out
        if clip:
            x0 = np.clip(x0, -1.0, 1.0)
            eps = (xt - a * x0) / s
        return x0, eps

    def respaced(self, steps: int) -> list[int]:
        """``steps`` distinct timesteps evenly spaced from T-1 down to 0.

        Raises:
            ConfigError: unless ``1 ≤ steps ≤ T``.
        """
        T = self.num_timesteps
        if not 1 <= steps <= T:
            raise ConfigError(f"--steps must be between 1 and the model's {T} training timesteps, got {steps}")
        if steps == 1:
            return [T - 1]
        ts = np.round(np.linspace(T - 1, 0, steps, dtype=np.float64)).astype(np.int64).tolist()
        return list(dict.fromkeys(ts))

    def lam(self, t: int) -> float:
        """Half log-SNR ``λ = log(α/σ)``."""
        ab = self.ab(t)
        return 0.5 * math.log(ab) - 0.5 * math.log1p(-ab)


def timesteps(schedule: Schedule, sampler: str, steps: int | None) -> list[int]:
    """Descending timesteps a sampler visits: evenly spaced (DDPM, DDIM) or evenly spaced in log-SNR and rounded
    to the nearest training timestep (DPM-Solver++(2M))."""
    T = schedule.num_timesteps
    default = DEFAULT_STEPS[sampler]
    n = steps or min(default or T, T)
    if sampler != "dpmpp_2m":
        return schedule.respaced(n)
    schedule.respaced(n)  # validates n
    lam = 0.5 * np.log(schedule.alpha_bar) - 0.5 * np.log1p(-schedule.alpha_bar)  # (T,) rising
    targets = np.linspace(float(lam[-1]), float(lam[0]), n, dtype=np.float64)
    ts = np.abs(lam[None, :] - targets[:, None]).argmin(axis=1).tolist()
    return list(dict.fromkeys(ts))


class NumpySampler:
    """One reverse-diffusion rule: ``step(x0, eps, t, t_prev, x, rng) → x_{t_prev}`` (``t_prev = -1``: data).

    Arguments:
        schedule: the model's schedule.
        kind: ``ddpm``, ``ddim`` or ``dpmpp_2m``.
        eta: DDIM stochasticity.
    """

    def __init__(self, schedule: Schedule, kind: str, eta: float = 0.0) -> None:
        if kind not in DEFAULT_STEPS:
            raise ConfigError(f"unknown --sampler '{kind}'; choose one of: {', '.join(DEFAULT_STEPS)}")
        self.schedule, self.kind, self.eta = schedule, kind, eta
        self._last: tuple[np.ndarray, float] | None = None

    def step(self, x0: np.ndarray, eps: np.ndarray, t: int, t_prev: int, x: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
        ab, ab_prev = self.schedule.ab(t), self.schedule.ab(t_prev)
        if self.kind == "ddpm":  # posterior q(x_prev | x_t, x̂_0), Ho et al. eq. 7
            a_step = ab / ab_prev
            b_step = 1 - a_step
            c0 = math.sqrt(ab_prev) * b_step / (1 - ab)
            ct = math.sqrt(a_step) * (1 - ab_prev) / (1 - ab)
            mean = np.float32(c0) * x0 + np.float32(ct) * x
            if t_prev < 0:
                return mean
            var = (1 - ab_prev) / (1 - ab) * b_step
            return mean + np.float32(math.sqrt(var)) * rng.standard_normal(x.shape, dtype=np.float32)
        if self.kind == "ddim":  # Song et al. eqs. 12, 16
            var = self.eta**2 * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
            mean = np.float32(math.sqrt(ab_prev)) * x0 + np.float32(math.sqrt(max(1 - ab_prev - var, 0.0))) * eps
            if var == 0.0:
                return mean
            return mean + np.float32(math.sqrt(var)) * rng.standard_normal(x.shape, dtype=np.float32)
        if t_prev < 0:  # DPM-Solver++(2M), Lu et al. Algorithm 2; first order on the last step
            self._last = None
            return x0
        lam, lam_prev = self.schedule.lam(t), self.schedule.lam(t_prev)
        h = lam_prev - lam
        d = x0
        if self._last is not None:
            x0_last, h_last = self._last
            r = h_last / h
            d = np.float32(1 + 1 / (2 * r)) * x0 - np.float32(1 / (2 * r)) * x0_last
        self._last = (x0, h)
        sigma_ratio = math.sqrt((1 - ab_prev) / (1 - ab))
        return np.float32(sigma_ratio) * x - np.float32(math.sqrt(ab_prev) * math.expm1(-h)) * d


# -- token decoding ---------------------------------------------------------------------------------

def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Set every logit below the k-th largest of its row to -inf (``k = 0`` keeps all)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = -np.partition(-logits, k - 1, axis=-1)[..., k - 1 : k]  # (B, 1)
    return np.where(logits < kth, -np.inf, logits).astype(logits.dtype)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (stable; -inf logits get probability 0)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filter: keep the smallest set of most likely tokens with total probability ≥ ``p``."""
    if p >= 1.0:
        return logits
    order = np.argsort(-logits, axis=-1, kind="stable")
    sorted_logits = np.take_along_axis(logits, order, axis=-1)
    probs = softmax(sorted_logits)
    drop = (np.cumsum(probs, axis=-1) - probs) >= p  # the top token is always kept
    drop_orig = np.zeros_like(drop)
    np.put_along_axis(drop_orig, order, drop, axis=-1)
    return np.where(drop_orig, -np.inf, logits).astype(logits.dtype)


def repetition_penalty(logits: np.ndarray, history: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL penalty: logits of tokens in ``history (B, L)`` divided by ``penalty`` when positive, multiplied when
    negative."""
    if penalty == 1.0 or history.size == 0:
        return logits
    out = logits.copy()
    seen = np.take_along_axis(logits, history, axis=-1)
    np.put_along_axis(out, history, np.where(seen > 0, seen / penalty, seen * penalty), axis=-1)
    return out


def guided_logits(cond: np.ndarray, uncond: np.ndarray, scale: float) -> np.ndarray:
    """Classifier-free guidance of next-token logits ``(B, V)``: ``log p(x|∅) + γ (log p(x|prompt) − log p(x|∅))``,
    as :class:`genlab.samplers.decoding.GuidedDecoder` (Sanchez et al., 2023, arXiv:2306.17806)."""
    lc, lu = log_softmax(cond), log_softmax(uncond)
    lu = np.where(np.isfinite(lu), lu, lc)
    return np.where(np.isfinite(lc), lu + scale * (lc - lu), lc)


def next_token(logits: np.ndarray, rng: np.random.Generator, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0) -> np.ndarray:
    """One token per row of ``logits (B, V)`` → ``(B,)`` int64: argmax at temperature 0, else a draw from the
    filtered softmax by inverse-CDF sampling."""
    logits = logits.astype(np.float32)
    if temperature == 0:
        return logits.argmax(-1).astype(np.int64)
    probs = softmax(top_p_filter(top_k_filter(logits / np.float32(temperature), top_k), top_p)).astype(np.float64)
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random((len(probs), 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(-1), probs.shape[-1] - 1).astype(np.int64)


def unmask(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, mask_id: int, steps: int,
           rng: np.random.Generator) -> np.ndarray:
    """The absorbing-state reverse process of :func:`genlab.samplers.absorbing.unmask` in numpy: over ``steps``
    equal steps from ``t = 1`` to 0, each masked cell is revealed with probability ``(α(s) − α(t)) / (1 − α(t))``
    (``α(t) = 1 − t``) and takes a value drawn from ``softmax(predict(x))``; revealed cells never change.

    References:
        Austin et al., "Structured Denoising Diffusion Models in Discrete State-Spaces", 2021, arXiv:2107.03006.
        Sahoo et al., "Simple and Effective Masked Diffusion Language Models", 2024, arXiv:2406.07524.
    """
    ts = np.linspace(1.0, 0.0, steps + 1)
    for t, s in itertools.pairwise(ts.tolist()):
        masked = x == mask_id
        if not masked.any():
            break
        p_reveal = 1.0 if s <= 0 else ((1.0 - s) - (1.0 - t)) / t
        logits = predict(x).astype(np.float64)  # (…, levels)
        z = np.exp(logits - logits.max(-1, keepdims=True))
        reveal = masked & (rng.random(x.shape) < p_reveal)
        draw = categorical((z / z.sum(-1, keepdims=True)).reshape(-1, logits.shape[-1]), rng).reshape(x.shape)
        x = np.where(reveal, draw, x)
    return x


def categorical(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw ``(N,)`` int64 from each row of probabilities ``p (N, K)`` (inverse CDF of one uniform each)."""
    return np.minimum((p.cumsum(axis=1) < rng.random((len(p), 1))).sum(axis=1), p.shape[1] - 1).astype(np.int64)


# -- multinomial diffusion ----------------------------------------------------------------------------

def gumbel_onehot(log_probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One-hot draws ``(B, K)`` from ``Cat(exp(log_probs))`` by Gumbel-max (as
    :meth:`genlab.samplers.multinomial.MultinomialDiffusion.draw`, noise from ``rng``)."""
    u = np.clip(rng.random(log_probs.shape), 1e-12, 1 - 1e-7)
    k = (log_probs - np.log(-np.log(u))).argmax(1)
    return np.eye(log_probs.shape[1], dtype=np.float32)[k]


def multinomial_posterior(x_t: np.ndarray, log_x0: np.ndarray, ab_t: float, ab_s: float) -> np.ndarray:
    """``log q(x_s | x_t, x̂_0)`` (normalised, float64) for one-hot ``x_t (B, K)`` and log-probabilities ``log_x0``
    of ``x_0``, ``s < t`` (:meth:`genlab.samplers.multinomial.MultinomialDiffusion.log_posterior`):
    ``∝ [(ᾱ_t/ᾱ_s) x_t + (1 - ᾱ_t/ᾱ_s) / K] ⊙ [ᾱ_s x̂_0 + (1 - ᾱ_s) / K]`` (Hoogeboom et al., arXiv:2102.05379)."""
    k = x_t.shape[1]
    ratio = min(ab_t / ab_s, 1.0)
    lik = np.log(ratio * x_t.astype(np.float64) + (1 - ratio) / k)
    prior = np.logaddexp(log_x0.astype(np.float64) + math.log(ab_s), math.log1p(-min(ab_s, 1 - 1e-12)) - math.log(k))
    un = lik + prior
    m = un.max(axis=1, keepdims=True)
    return un - (m + np.log(np.exp(un - m).sum(axis=1, keepdims=True)))


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax (float64)."""
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))
