"""Samplers on a Gaussian toy problem with the exact denoiser, DDIM/DDPM equivalences, RePaint."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.errors import ConfigError
from genlab.samplers import SAMPLERS, NoiseSchedule, repaint, sample_loop
from genlab.samplers.diffusion import DDIM, DDPM, DPMSolverPP2M

MU, STD = 0.3, 0.5  # toy data x_0 ~ N(MU, STD²) per dimension


def gaussian_denoiser(sched: NoiseSchedule):
    """Exact E[x_0 | x_t] for x_0 ~ N(MU, STD²): MU + a·STD²/(a²·STD² + σ²) · (x_t - a·MU)."""

    def denoise(x, t):
        ab = float(sched.alpha_bar_at(t))
        a, s2 = math.sqrt(ab), 1 - ab
        x0 = MU + a * STD**2 / (ab * STD**2 + s2) * (x - a * MU)
        return x0, (x - a * x0) / math.sqrt(s2)

    return denoise


pytestmark = pytest.mark.usefixtures("one_thread")


def test_registry_has_the_three_samplers():
    assert set(SAMPLERS) >= {"ddpm", "ddim", "dpmpp_2m"}


# a coarse DDPM chain with the fixed variance β̃ ignores Var[x_0 | x_t], hence its wider tolerance (arXiv:2102.09672)
@pytest.mark.parametrize(("name", "steps", "eta", "tol"), [("ddpm", None, 0.0, 0.03), ("ddpm", 40, 0.0, 0.06),
                                                           ("ddim", 50, 0.0, 0.03), ("ddim", 50, 1.0, 0.03),
                                                           ("dpmpp_2m", 10, 0.0, 0.03)])
def test_samplers_recover_gaussian_data(name, steps, eta, tol):
    sched = NoiseSchedule.make("cosine", 200)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((20_000,), generator=g, dtype=torch.float64)
    out = sample_loop(SAMPLERS[name](sched, eta), gaussian_denoiser(sched), x, steps, g, show_progress=False)
    assert abs(out.mean().item() - MU) < tol
    assert abs(out.std().item() - STD) < tol


def test_ddim_eta0_is_deterministic_given_start_noise():
    sched = NoiseSchedule.make("linear", 100)
    x = torch.randn((64,), generator=torch.Generator().manual_seed(0))
    den = gaussian_denoiser(sched)
    a = sample_loop(DDIM(sched, 0.0), den, x.clone(), 20, torch.Generator().manual_seed(1), show_progress=False)
    b = sample_loop(DDIM(sched, 0.0), den, x.clone(), 20, torch.Generator().manual_seed(2), show_progress=False)
    assert torch.equal(a, b)
    c = sample_loop(DDIM(sched, 1.0), den, x.clone(), 20, torch.Generator().manual_seed(1), show_progress=False)
    d = sample_loop(DDIM(sched, 1.0), den, x.clone(), 20, torch.Generator().manual_seed(2), show_progress=False)
    assert not torch.equal(c, d)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddim_eta1_all_steps_matches_ddpm_step(kind):
    sched = NoiseSchedule.make(kind, 100)
    ddim, ddpm = DDIM(sched, 1.0), DDPM(sched)
    assert ddim.timesteps(100) == ddpm.timesteps(None) == list(range(99, -1, -1))
    g = torch.Generator().manual_seed(3)
    for t in (99, 60, 20, 1):
        x = torch.randn((16,), generator=g, dtype=torch.float64)
        x0 = torch.randn((16,), generator=g, dtype=torch.float64)
        eps = (x - math.sqrt(float(sched.alpha_bar_at(t))) * x0) / math.sqrt(1 - float(sched.alpha_bar_at(t)))
        m_ddim, v_ddim = ddim.mean_var(x0, eps, t, t - 1)
        m_ddpm, v_ddpm = ddpm.mean_var(x0, x, t, t - 1)
        torch.testing.assert_close(m_ddim, m_ddpm, rtol=1e-9, atol=1e-9)
        assert v_ddim == pytest.approx(float(v_ddpm), rel=1e-9)
        # empirically too: many draws of one step from the same x_t
        n = 100_000
        xs, x0s, es = x[:1].expand(n), x0[:1].expand(n), eps[:1].expand(n)
        a = ddim.step(x0s, es, t, t - 1, xs, torch.Generator().manual_seed(10))
        b = ddpm.step(x0s, es, t, t - 1, xs, torch.Generator().manual_seed(11))
        sd = math.sqrt(float(v_ddpm))
        assert abs(a.mean() - b.mean()) < 5 * sd * math.sqrt(2 / n) + 1e-12
        assert abs(a.var() / b.var() - 1) < 0.02


@pytest.mark.parametrize("steps", [10, 50])
def test_dpm_solver_beats_ddim_at_few_steps(steps):
    """Against the exact ODE solution: x_0 ~ N(μ, s²) keeps each sample's z-score along the probability flow."""
    sched = NoiseSchedule.make("linear", 1000)
    x = torch.randn((4000,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ab_T, ab_0 = float(sched.alpha_bar_at(999)), float(sched.alpha_bar_at(0))
    z = (x - math.sqrt(ab_T) * MU) / math.sqrt(ab_T * STD**2 + 1 - ab_T)
    exact = MU + math.sqrt(ab_0) * STD**2 * z / math.sqrt(ab_0 * STD**2 + 1 - ab_0)  # E[x_0 | x at t = 0]
    den = gaussian_denoiser(sched)
    err_ddim = (sample_loop(DDIM(sched), den, x.clone(), steps, None, show_progress=False) - exact).abs().mean()
    err_dpm = (sample_loop(DPMSolverPP2M(sched), den, x.clone(), steps, None, show_progress=False) - exact).abs().mean()
    assert err_dpm < 0.2 * err_ddim


def test_repaint_keeps_known_pixels():
    sched = NoiseSchedule.make("cosine", 50)
    g = torch.Generator().manual_seed(0)
    known = torch.rand((3, 1, 6, 6), generator=g) * 2 - 1
    keep = torch.ones((1, 1, 6, 6), dtype=torch.bool)
    keep[..., 2:4, 1:5] = False
    den = gaussian_denoiser(sched)
    for sampler in (DDPM(sched), DDIM(sched, 0.5), DPMSolverPP2M(sched)):
        out = repaint(sampler, lambda x, t: tuple(v.float() for v in den(x, t)), known, keep, 10, 2, g,
                      show_progress=False)
        assert torch.equal(out[keep.expand_as(out)], known[keep.expand_as(known)])
        assert not torch.equal(out, known)
    with pytest.raises(ConfigError):
        repaint(DDPM(sched), den, known, keep, 10, 0, g, show_progress=False)
