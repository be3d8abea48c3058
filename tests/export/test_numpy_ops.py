"""The runtime's numpy samplers, decoding filters, tokenizer and grids give what their torch counterparts give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.export import numpy_ops as nops
from genlab.samplers import SAMPLERS, NoiseSchedule
from genlab.samplers import decoding as tdec


@pytest.fixture(params=["cosine", "linear"])
def schedules(request):
    s = NoiseSchedule.make(request.param, 50)
    return s, nops.Schedule(s.alpha_bar.tolist())


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp_2m"])
@pytest.mark.parametrize("steps", [None, 7, 1])
def test_timesteps(schedules, sampler, steps):
    s, ns = schedules
    assert nops.timesteps(ns, sampler, steps) == SAMPLERS[sampler](s).timesteps(steps)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_predictions(schedules, prediction):
    s, ns = schedules
    g = torch.Generator().manual_seed(0)
    out, xt = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g) * 2
    for t in (0, 20, 49):
        for clip in (False, True):
            x0, eps = s.predictions(out, xt, t, prediction, clip=clip)
            nx0, neps = ns.predictions(out.numpy(), xt.numpy(), t, prediction, clip=clip)
            np.testing.assert_allclose(nx0, x0.numpy(), atol=2e-5)
            np.testing.assert_allclose(neps, eps.numpy(), atol=2e-5)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp_2m"])
def test_deterministic_sampler_paths_match(schedules, sampler):
    """A whole run of the update rule on fixed predictions; noise-free paths (DDIM η=0, DPM-Solver++, DDPM's last
    step) must agree, noisy DDPM steps are compared through their mean (noise set to zero on both sides)."""
    s, ns = schedules
    g = torch.Generator().manual_seed(1)
    ts = SAMPLERS[sampler](s).timesteps(6)
    x = torch.randn(2, 1, 3, 3, generator=g)
    preds = [(torch.randn(2, 1, 3, 3, generator=g), torch.randn(2, 1, 3, 3, generator=g)) for _ in ts]
    ref, mine = SAMPLERS[sampler](s, 0.0), nops.NumpySampler(ns, sampler, 0.0)
    ref.reset()
    xt, xn = x.clone(), x.numpy().copy()
    zero = torch.Generator().manual_seed(0)

    class Zero:
        def standard_normal(self, shape, dtype=np.float32):
            return np.zeros(shape, dtype)

    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        x0, eps = preds[i]
        if sampler == "ddpm" and t_prev >= 0:
            mean, _ = ref.mean_var(x0, xt, t, t_prev)
            xt = mean
        else:
            xt = ref.step(x0, eps, t, t_prev, xt, zero)
        xn = mine.step(x0.numpy(), eps.numpy(), t, t_prev, xn, Zero())
        np.testing.assert_allclose(xn, xt.numpy(), atol=1e-5)


def test_ddim_noise_has_the_right_variance(schedules):
    s, ns = schedules
    mine = nops.NumpySampler(ns, "ddim", 1.0)
    ref = SAMPLERS["ddim"](s, 1.0)
    x0, eps = np.zeros((20000,), np.float32), np.zeros((20000,), np.float32)
    out = mine.step(x0, eps, 30, 10, x0, np.random.default_rng(0))
    _, var = ref.mean_var(torch.zeros(1), torch.zeros(1), 30, 10)
    assert abs(out.var() / var - 1) < 0.05


def test_decoding_filters_match_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=g) * 3
    history = torch.randint(0, 50, (4, 9), generator=g)
    for k in (0, 1, 5, 49, 50):
        np.testing.assert_array_equal(nops.top_k_filter(logits.numpy(), k), tdec.top_k_filter(logits, k).numpy())
    for p in (0.1, 0.5, 0.9, 1.0):
        np.testing.assert_array_equal(np.isinf(nops.top_p_filter(logits.numpy(), p)),
                                      np.isinf(tdec.top_p_filter(logits, p).numpy()))
    for pen in (1.0, 1.3):
        np.testing.assert_allclose(nops.repetition_penalty(logits.numpy(), history.numpy(), pen),
                                   tdec.repetition_penalty(logits, history, pen).numpy(), atol=1e-6)
    greedy = nops.next_token(logits.numpy(), np.random.default_rng(0), temperature=0)
    np.testing.assert_array_equal(greedy, tdec.next_token(logits, temperature=0).numpy())


def test_next_token_draws_from_the_filtered_softmax():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32)).repeat(40000, 0)
    rng = np.random.default_rng(0)
    freq = np.bincount(nops.next_token(logits, rng), minlength=4) / len(logits)
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.01)
    top2 = np.bincount(nops.next_token(logits, rng, top_k=2), minlength=4) / len(logits)
    np.testing.assert_allclose(top2, [0.625, 0.375, 0, 0], atol=0.01)
    nucleus = np.bincount(nops.next_token(logits, rng, top_p=0.7), minlength=4) / len(logits)  # keeps 0.5, 0.3
    np.testing.assert_allclose(nucleus, [0.625, 0.375, 0, 0], atol=0.01)


def test_grid_and_scatter_match_genlabs():
    from genlab.export.outputs import grid, scatter
    from genlab.report import grids

    imgs = np.random.default_rng(0).integers(0, 256, (7, 3, 5, 6), dtype=np.uint8)
    np.testing.assert_array_equal(grid(imgs, 3), grids.grid(imgs, 3))
    pts = np.random.default_rng(1).normal(size=(300, 2))
    np.testing.assert_array_equal(scatter(pts), grids.scatter(pts))
