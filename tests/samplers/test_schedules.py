"""Noise schedules: ᾱ, q(x_t | x_0), the posterior q(x_{t-1} | x_t, x_0) and the prediction conversions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from genlab.errors import ConfigError
from genlab.samplers import NoiseSchedule

KINDS = ["linear", "cosine"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [10, 1000])
def test_alpha_bar_strictly_decreasing_in_unit_interval(kind, T):
    ab = NoiseSchedule.make(kind, T).alpha_bar
    assert ab.shape == (T,)
    assert (ab > 0).all() and (ab < 1).all()
    assert (ab[1:] < ab[:-1]).all()


def test_bad_schedule_is_a_config_error():
    with pytest.raises(ConfigError):
        NoiseSchedule.make("linear", 1)
    with pytest.raises(ConfigError):
        NoiseSchedule.make("quadratic", 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_add_noise_matches_closed_form(kind):
    sched = NoiseSchedule.make(kind, 100)
    ab = np.cumprod(1 - sched.betas.numpy())  # ᾱ_t = Π (1 - β_s), independently of the class
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((6, 1, 4, 4), generator=g) * 2 - 1
    eps = torch.randn((6, 1, 4, 4), generator=g)
    t = torch.tensor([0, 5, 17, 50, 98, 99])
    xt = sched.add_noise(x0, eps, t)
    want = np.sqrt(ab[t])[:, None, None, None] * x0.numpy() + np.sqrt(1 - ab[t])[:, None, None, None] * eps.numpy()
    np.testing.assert_allclose(xt.numpy(), want, rtol=1e-5, atol=1e-6)
    # and its distribution: mean √ᾱ x_0, variance 1 - ᾱ
    x0 = torch.full((200_000,), 0.7)
    samples = sched.add_noise(x0, torch.randn(200_000, generator=g), 30)
    assert abs(samples.mean().item() - np.sqrt(ab[30]) * 0.7) < 0.01
    assert abs(samples.var().item() - (1 - ab[30])) < 0.01


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_matches_ddpm_equations(kind):
    sched = NoiseSchedule.make(kind, 50)
    beta = sched.betas.numpy()
    ab = np.cumprod(1 - beta)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn((8, 3), generator=g, dtype=torch.float64)
    xt = torch.randn((8, 3), generator=g, dtype=torch.float64)
    t = torch.randint(1, 50, (8,), generator=g)
    mean, var = sched.posterior(x0, xt, t)
    tn = t.numpy()
    ab_t, ab_prev, b = ab[tn][:, None], ab[tn - 1][:, None], beta[tn][:, None]
    # eq. (7) of arXiv:2006.11239
    mu = np.sqrt(ab_prev) * b / (1 - ab_t) * x0.numpy() + np.sqrt(1 - b) * (1 - ab_prev) / (1 - ab_t) * xt.numpy()
    np.testing.assert_allclose(mean.numpy(), mu, rtol=1e-10)
    np.testing.assert_allclose(var.expand_as(mean).numpy(), np.broadcast_to((1 - ab_prev) / (1 - ab_t) * b, mu.shape),
                               rtol=1e-10)
    # and Bayes' rule: N(x_{t-1}; √ᾱ_{t-1} x_0, 1-ᾱ_{t-1}) · N(x_t; √α_t x_{t-1}, β_t), normalised
    prec = 1 / (1 - ab_prev) + (1 - b) / b
    mu_bayes = (np.sqrt(ab_prev) * x0.numpy() / (1 - ab_prev) + np.sqrt(1 - b) * xt.numpy() / b) / prec
    np.testing.assert_allclose(mean.numpy(), mu_bayes, rtol=1e-8)
    np.testing.assert_allclose(var.expand_as(mean).numpy(), np.broadcast_to(1 / prec, mu.shape), rtol=1e-8)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_predictions_invert_targets(prediction):
    sched = NoiseSchedule.make("cosine", 100)
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand((5, 1, 3, 3), generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn((5, 1, 3, 3), generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 50, 90, 99])
    xt = sched.add_noise(x0, eps, t)
    x0_hat, eps_hat = sched.predictions(sched.target(x0, eps, t, prediction), xt, t, prediction)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-6, atol=1e-6)


def test_respaced_timesteps():
    sched = NoiseSchedule.make("linear", 100)
    for steps in (1, 10, 25, 100):
        ts = sched.respaced(steps)
        assert len(ts) == steps and ts[0] == 99 and all(a > b for a, b in itertools.pairwise(ts))
        assert steps == 1 or ts[-1] == 0
    with pytest.raises(ConfigError):
        sched.respaced(101)
