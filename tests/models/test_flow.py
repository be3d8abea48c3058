"""Flows: every bijection's log-det against the brute-force Jacobian, x → z → x, a 2-D density integrating to 1."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

import genlab
from genlab.core import Batch, DataSpec
from genlab.flows.coupling import MAF, AffineCoupling, SplineCoupling, rational_quadratic_spline
from genlab.flows.layers import ActNorm, InvertibleLinear, Reverse, Squeeze


def _randomize(module: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)
        for name, b in module.named_buffers():
            if name.endswith("initialized"):
                b.fill_(1)
    return module.eval()


BIJECTIONS = {
    "actnorm-image": (lambda: ActNorm(3), (3, 4, 4), 0),
    "actnorm-vector": (lambda: ActNorm(5), (5,), 0),
    "invertible-1x1": (lambda: InvertibleLinear(4), (4, 3, 3), 0),
    "invertible-linear": (lambda: InvertibleLinear(3), (3,), 0),
    "squeeze": (lambda: Squeeze(), (2, 4, 4), 0),
    "reverse": (lambda: Reverse(), (3,), 0),
    "affine-coupling-conv": (lambda: AffineCoupling(4, 8, image=True, ctx_dim=3), (4, 3, 3), 3),
    "affine-coupling-mlp": (lambda: AffineCoupling(5, 8, image=False, ctx_dim=3), (5,), 3),
    "spline-coupling": (lambda: SplineCoupling(4, 8, bins=5, bound=2.0, ctx_dim=3), (4,), 3),
    "maf": (lambda: MAF(4, 12, ctx_dim=3), (4,), 3),
}


@pytest.mark.parametrize("name", list(BIJECTIONS))
def test_log_det_matches_brute_force_jacobian(name):
    make, shape, ctx_dim = BIJECTIONS[name]
    bij = _randomize(make())
    x = torch.randn(1, *shape, dtype=torch.float64) * 1.5  # some spline inputs fall in the identity tails
    ctx = torch.randn(1, ctx_dim, dtype=torch.float64) if ctx_dim else None
    z, logdet = bij(x, ctx)
    jac = jacobian(lambda flat: bij(flat.view_as(x), ctx)[0].flatten(), x.flatten())
    assert torch.allclose(logdet[0], torch.linalg.slogdet(jac)[1], atol=1e-8)
    assert (bij.inverse(z, ctx) - x).abs().max() < 1e-9


def test_spline_is_monotone_and_inverts_on_and_off_the_interval():
    x = torch.linspace(-5, 5, 401, dtype=torch.float64)
    w, h, d = (torch.randn(401, k, dtype=torch.float64) for k in (6, 6, 5))
    y, ld = rational_quadratic_spline(x, w, h, d, bound=3.0)
    back, ld_inv = rational_quadratic_spline(y, w, h, d, inverse=True, bound=3.0)
    assert (back - x).abs().max() < 1e-9 and torch.allclose(ld, -ld_inv, atol=1e-9)
    outside = x.abs() >= 3.0
    assert torch.equal(y[outside], x[outside]) and torch.all(ld[outside] == 0)


def _flow(spec: DataSpec, **options) -> genlab.GenerativeModel:
    return _randomize(genlab.create("flow", spec, **options), std=0.05)


def test_image_flow_reconstructs_x_from_z():
    spec = DataSpec("image", (1, 8, 8), num_classes=4)
    m = _flow(spec, levels=2, steps=2, hidden=8, class_dim=4)
    v = torch.rand(3, 1, 8, 8, dtype=torch.float64) * 2 - 1
    y = torch.tensor([0, 1, 3])
    z, log_p = m.transform(v, y)
    assert z.shape == (3, 64) and log_p.shape == (3,)
    assert (m.inverse_transform(z, y) - v).abs().max() < 1e-4
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(m.decode(m.encode(x, y), y), x)  # bin centres map back to the same pixels


@pytest.mark.parametrize("layer", ["spline", "affine", "maf"])
def test_vector_flow_reconstructs_and_integrates_to_one(layer):
    m = _flow(DataSpec("vector", (2,)), steps=3, hidden=16, vector_layer=layer, bins=6, tail_bound=3.0)
    x = torch.randn(16, 2, dtype=torch.float64)
    z = m.encode(x)
    assert (m.inverse_transform(z) - x).abs().max() < 1e-4
    assert m.decode(z).dtype == torch.float32
    # ∫ p(x) dx over a grid wide enough to hold all but a negligible share of the mass
    n, lim = 301, 9.0
    g = torch.linspace(-lim, lim, n, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    mass = m.log_prob(grid).exp().sum() * (g[1] - g[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=1e-2)


def test_image_log_prob_is_the_dequantization_bound():
    spec = DataSpec("image", (1, 4, 4))
    m = genlab.create("flow", spec, levels=1, steps=1, hidden=4, eval_samples=3).double().eval()
    x = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(3):
        u = torch.rand(x.shape, generator=g).double()
        samples.append(m.transform((x.double() + u) / 128 - 1)[1] + 16 * math.log(2 / 256))
    expected = torch.logsumexp(torch.stack(samples), 0) - math.log(3)
    assert torch.allclose(m.log_prob(x), expected)
    assert m.likelihood == "bound"


def test_variational_dequantization_trains_and_bounds():
    spec = DataSpec("image", (1, 4, 4), num_classes=2)
    m = genlab.create("flow", spec, levels=1, steps=1, hidden=4, dequantization="variational",
                      dequant_hidden=4, eval_samples=2)
    x = torch.randint(0, 256, (4, 1, 4, 4), dtype=torch.uint8)
    loss, logs = m.loss(Batch(x, torch.tensor([0, 1, 0, 1]), seed=1))
    loss.backward()
    assert math.isfinite(logs["bpd"])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.dequantizer.parameters())
    lp = m.eval().log_prob(x, torch.tensor([0, 1, 0, 1]))
    assert lp.shape == (4,) and torch.all(lp < 0)


def test_temperature_shrinks_vector_samples():
    m = genlab.create("flow", DataSpec("vector", (2,)), steps=2, hidden=8).eval()
    hot = genlab.sample(m, 500, seed=0, temperature=1.0)
    cold = genlab.sample(m, 500, seed=0, temperature=0.3)
    assert hot.dtype == torch.float32 and cold.std() < hot.std()
