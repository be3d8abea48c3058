"""Multinomial diffusion: marginals, posteriors (by brute-force Bayes), KL terms and draws."""

from __future__ import annotations

import math

import torch

from genlab.samplers import NoiseSchedule
from genlab.samplers.multinomial import MultinomialDiffusion


def _transition(ab_from: float, ab_to: float, k: int) -> torch.Tensor:
    """Matrix Q[i, j] = q(x_to = j | x_from = i) of the uniform-noise chain."""
    r = ab_to / ab_from
    return r * torch.eye(k, dtype=torch.float64) + (1 - r) / k


def test_marginal_and_posterior_match_bayes():
    sched = NoiseSchedule.make("cosine", 20)
    md = MultinomialDiffusion(sched)
    k = 5
    x0 = torch.tensor([[0.1, 0.6, 0.1, 0.1, 0.1]], dtype=torch.float64)  # a distribution over x_0
    for t, s in ((7, 6), (12, 3), (4, -1)):
        ab_t, ab_s = float(sched.alpha_bar_at(t)), float(sched.alpha_bar_at(s))
        marg = md.log_marginal(torch.log(x0), t).exp()
        assert torch.allclose(marg, x0 @ _transition(1.0, ab_t, k), atol=1e-12)
        xt = torch.nn.functional.one_hot(torch.tensor([3]), k).double()
        # Bayes: q(x_s | x_t, x_0) ∝ q(x_t | x_s) q(x_s | x_0)
        joint = _transition(ab_s, ab_t, k)[:, 3] * (x0 @ _transition(1.0, ab_s, k))[0]
        post = md.log_posterior(xt, torch.log(x0), t, s).exp()
        assert torch.allclose(post[0], joint / joint.sum(), atol=1e-10)


def test_kl_is_zero_for_a_perfect_model_and_nll_at_t0():
    sched = NoiseSchedule.make("linear", 50)
    md = MultinomialDiffusion(sched)
    x0 = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).double()
    xt = torch.nn.functional.one_hot(torch.tensor([1, 2]), 3).double()
    t = torch.tensor([10, 30])
    assert torch.allclose(md.kl(xt, x0, torch.log(x0.clamp(min=1e-30)), t), torch.zeros(2, dtype=torch.float64),
                          atol=1e-8)
    uniform = torch.full((2, 3), -math.log(3), dtype=torch.float64)
    assert (md.kl(xt, x0, uniform, t) > 0).all()
    # at t = 0 the KL is -log p(x_0 | x_t) of the model's posterior at s = -1
    t0 = torch.zeros(2, dtype=torch.long)
    p = md.log_posterior(xt, uniform, 0, -1)
    assert torch.allclose(md.kl(xt, x0, uniform, t0), -(p * x0).sum(1), atol=1e-10)
    assert md.prior_kl(x0).max() < 1e-3  # the chain ends near uniform


def test_draws_follow_the_probabilities():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.2, 0.5, 0.3]]).expand(20000, 3)
    hot = MultinomialDiffusion.draw(torch.log(probs), torch.rand(probs.shape, generator=g))
    assert torch.allclose(hot.mean(0), probs[0], atol=0.015) and torch.equal(hot.sum(1), torch.ones(20000))
