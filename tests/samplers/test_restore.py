"""DDIM inversion and diffusion denoising against closed forms: for Gaussian data the optimal denoiser is linear and
the probability-flow ODE maps noise to data by a known scaling."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.samplers import SAMPLERS, NoiseSchedule, ddim_decode, ddim_invert, denoise_from
from genlab.samplers.restore import matching_timestep, restore_timesteps

S = 0.5  # data ~ N(0, S² I)


def gaussian_denoiser(schedule: NoiseSchedule):
    """The exact E[x0 | x_t] for data N(0, S²): x̂_0 = √ᾱ S² x_t / (ᾱ S² + 1 - ᾱ)."""

    def denoise(x, t):
        ab = float(schedule.alpha_bar_at(t))
        x0 = math.sqrt(ab) * S**2 * x / (ab * S**2 + 1 - ab)
        return x0, (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)

    return denoise


def test_ddim_inversion_round_trip_shrinks_with_steps():
    sched = NoiseSchedule.make("cosine", 1000)
    den = gaussian_denoiser(sched)
    x0 = S * torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errs = []
    for steps in (10, 100):
        xt = ddim_invert(sched, den, x0, steps, show_progress=False)
        back = ddim_decode(sched, den, xt, steps, show_progress=False)
        errs.append(float((back - x0).abs().mean()))
    assert errs[1] < errs[0] / 5 and errs[1] < 0.02  # first order: the error falls like 1/steps
    # the exact flow maps N(0, S²) data to N(0, 1) noise by 1/S (at ᾱ_T ≈ 0)
    xt = ddim_invert(sched, den, x0, 200, show_progress=False)
    assert float((xt / x0).median()) == pytest.approx(1 / S, rel=0.05)


def test_matching_timestep_and_restore_schedule():
    sched = NoiseSchedule.make("cosine", 1000)
    s = SAMPLERS["ddim"](sched)
    t = matching_timestep(s, 0.4)
    ab = float(sched.alpha_bar_at(t))
    assert math.sqrt((1 - ab) / ab) == pytest.approx(0.4, rel=0.02)
    ts = restore_timesteps(t, 25)
    assert ts[0] == t and ts[-1] == 0 and len(ts) == 25 and ts == sorted(ts, reverse=True)
    assert restore_timesteps(3, 25) == [3, 2, 1, 0]


def test_denoising_from_the_matching_level_follows_the_flow():
    """Without the data term, deterministic DDIM from y (data + σ noise) gives S/√(S²+σ²) · y for Gaussian data;
    with it, the result moves toward y."""
    sched = NoiseSchedule.make("cosine", 1000)
    den = gaussian_denoiser(sched)
    sigma = 0.6
    y = math.sqrt(S**2 + sigma**2) * torch.randn(256, 1, 2, 2, generator=torch.Generator().manual_seed(1),
                                                 dtype=torch.float64)
    y = y.clamp(-0.99, 0.99)
    s = SAMPLERS["ddim"](sched)
    out = denoise_from(s, den, y, sigma, steps=200, consistency=0.0, show_progress=False)
    ratio = float((out / y).median())
    assert ratio == pytest.approx(S / math.sqrt(S**2 + sigma**2), rel=0.03)
    out_c = denoise_from(s, den, y, sigma, steps=200, consistency=1.0, show_progress=False)
    assert float((out_c - y).abs().mean()) < float((out - y).abs().mean())


def test_latents_stop_where_alpha_bar_still_carries_signal():
    """A denoiser whose noise estimate is 1 % off: decoding from t = T - 1 (ᾱ ≈ 2e-6) multiplies that error at the
    first step and loses the data; the latent timestep (ᾱ ≥ 1e-3) keeps the round trip close."""
    from genlab.samplers.invert import LATENT_MIN_ALPHA_BAR, latent_timestep

    sched = NoiseSchedule.make("cosine", 1000)
    top = latent_timestep(sched)
    assert float(sched.alpha_bar_at(top)) >= LATENT_MIN_ALPHA_BAR > float(sched.alpha_bar_at(top + 1))
    exact = gaussian_denoiser(sched)

    def off(x, t):
        _, eps = exact(x, t)
        eps = 1.01 * eps
        ab = float(sched.alpha_bar_at(t))
        return (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab), eps

    x0 = S * torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errs = {}
    for name, t in (("last", None), ("latent", top)):
        xt = ddim_invert(sched, off, x0, 50, show_progress=False, top=t)
        errs[name] = float((ddim_decode(sched, off, xt, 50, show_progress=False, top=t) - x0).abs().mean())
    assert errs["latent"] < 0.05 and errs["last"] > 4 * errs["latent"], errs
