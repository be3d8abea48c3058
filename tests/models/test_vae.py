"""VAE: the discretized likelihood is normalized, IWAE tightens the ELBO, encode/decode/interpolate work."""

from __future__ import annotations

import math

import pytest
import torch

import genlab
from genlab.core import Batch
from genlab.distributions import bernoulli_log_prob, discretized_logistic_log_prob
from tests.conftest import TINY


@pytest.mark.parametrize("mean,log_scale", [(0.0, -2.0), (0.7, -4.0), (-1.2, 0.5), (0.99, -7.0)])
def test_discretized_logistic_sums_to_one(mean, log_scale):
    k = torch.arange(256, dtype=torch.uint8)
    lp = discretized_logistic_log_prob(k, torch.full((256,), mean), torch.full((256,), log_scale))
    assert torch.logsumexp(lp.double(), 0).exp().item() == pytest.approx(1.0, abs=1e-4)


def test_bernoulli_on_binarized_pixels():
    x = torch.tensor([0, 255, 200, 10], dtype=torch.uint8)
    lp = bernoulli_log_prob(x, torch.zeros(4))
    assert torch.allclose(lp, torch.full((4,), math.log(0.5)))


@pytest.fixture()
def vae(splits):
    train, _ = splits["image"]
    return genlab.create("vae", train.spec, **{**TINY["vae"], "iwae_k": 64}).eval(), train


def test_iwae_bound_tighter_than_elbo(vae):
    model, train = vae
    x, y = train.x[:16], train.y[:16]
    with torch.no_grad():
        _, logs = model.loss(Batch(x, y, seed=1))
    elbo = -logs["rec"] - logs["kl"]  # mean ELBO estimate (one sample per example)
    iw1 = model.log_prob(x, y, k=1).mean().item()
    iw64 = model.log_prob(x, y, k=64).mean().item()
    assert iw1 == pytest.approx(elbo, rel=0.05)
    assert iw64 >= iw1 - 1e-3
    assert iw64 <= 0


def test_encode_decode_interpolate(vae):
    model, train = vae
    mu, logvar = model.encode(train.x[:3], train.y[:3])
    assert mu.shape == logvar.shape == (3, model.config.latent_dim)
    imgs = model.decode(mu, train.y[:3])
    assert imgs.shape == (3, 1, 8, 8) and imgs.dtype == torch.uint8
    path = model.interpolate(train.x[0], train.x[1], steps=5, cond=train.y[0])
    assert path.shape == (5, 1, 8, 8)


def test_beta_weights_kl(splits):
    train, _ = splits["image"]
    b = Batch(train.x[:8], train.y[:8], seed=0)
    torch.manual_seed(0)
    m0 = genlab.create("vae", train.spec, **{**TINY["vae"], "beta": 0.0})
    m2 = genlab.create("vae", train.spec, **{**TINY["vae"], "beta": 2.0})
    m2.load_state_dict(m0.state_dict())
    (l0, logs), (l2, _) = m0.loss(Batch(b.x, b.y, seed=0)), m2.loss(Batch(b.x, b.y, seed=0))
    assert (l2 - l0).item() * train.spec.dims == pytest.approx(2 * logs["kl"], rel=1e-4)


def test_kl_warmup_ramps_on_images_and_travels_with_the_weights(splits):
    """With ``kl_warmup`` the KL weight rises linearly over training steps on any data form (not only tokens), the
    step count is a buffer saved with the weights, and evaluation does not advance it."""
    train, _ = splits["image"]
    b = Batch(train.x[:8], train.y[:8], seed=0)
    m = genlab.create("vae", train.spec, **{**TINY["vae"], "beta": 1.0, "kl_warmup": 4})
    assert "steps" in m.state_dict() and "steps" not in genlab.create("vae", train.spec, **TINY["vae"]).state_dict()
    m.train()
    weights = [float(m._beta()) for _ in range(6)]
    assert weights == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    m.eval()
    m.loss(b)
    assert int(m.steps) == 6
    fresh = genlab.create("vae", train.spec, **{**TINY["vae"], "beta": 1.0, "kl_warmup": 4})
    fresh.load_state_dict(m.state_dict())
    assert int(fresh.steps) == 6


def test_kl_warmup_adds_no_graph_break(splits):
    """The warm-up reads its step count as a tensor, so ``torch.compile`` traces the loss with it in as few graphs
    as without it (the logged ``.item()`` values at the end break it either way)."""
    train, _ = splits["image"]
    breaks = []
    for warmup in (0, 4):
        m = genlab.create("vae", train.spec, **{**TINY["vae"], "kl_warmup": warmup})
        m.train()
        torch._dynamo.reset()
        breaks.append(torch._dynamo.explain(m.loss)(Batch(train.x[:8], train.y[:8], seed=0)).graph_break_count)
    assert breaks[1] == breaks[0], breaks


def test_bernoulli_vae_learns_binarized_data(tmp_path):
    """Pixel samples of a Bernoulli decoder are binary, and after a little training the share of white pixels in
    samples matches the data's (an untrained decoder puts it near 0.5)."""
    run = genlab.train("vae", "digits", out=tmp_path / "r", binarize=True, likelihood="bernoulli", max_steps=80,
                       batch_size=64, lr=3e-3, quiet=True, device="cpu", eval_every=0, sample_mode="sample",
                       **TINY["vae"])
    x = genlab.sample(run, 400, seed=0)
    assert set(torch.unique(x).tolist()) == {0, 255}
    train = genlab.api.load_splits(run).train.x
    data_share = (train == 255).double().mean().item()
    sample_share = (x == 255).double().mean().item()
    assert abs(sample_share - data_share) < 0.06, (sample_share, data_share)
    assert abs(0.5 - data_share) > 0.15  # so the check above tells a trained decoder from an untrained one
