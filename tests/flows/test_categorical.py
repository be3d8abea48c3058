"""The argmax lift of one-hot blocks: its argmax is the category, and log q is its exact density."""

from __future__ import annotations

import math

import torch
from torch.autograd.functional import jacobian

from genlab.flows.categorical import argmax_lift


def test_argmax_is_the_category_and_numbers_pass_through():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[0.7, 0, 1, 0, 1, 0], [-1.2, 1, 0, 0, 0, 1]])
    v, log_q = argmax_lift(x, [(1, 3), (4, 2)], torch.randn(x.shape, generator=g))
    assert torch.equal(v[:, 0], x[:, 0])
    assert v[:, 1:4].argmax(1).tolist() == [1, 0] and v[:, 4:6].argmax(1).tolist() == [0, 1]
    assert log_q.shape == (2,) and torch.isfinite(log_q).all()


def test_log_q_is_the_change_of_variables_density():
    """log q(v|k) = log N(u) - log |det ∂v/∂u|, with the Jacobian computed by autograd."""
    k = 4
    x = torch.zeros(1, k, dtype=torch.float64)
    x[0, 2] = 1
    u = torch.randn(1, k, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _, log_q = argmax_lift(x, [(0, k)], u)

    def lift(w):
        return argmax_lift(x, [(0, k)], w.view(1, k))[0].view(k)

    jac = jacobian(lift, u.view(k))
    expected = -0.5 * (u.pow(2) + math.log(2 * math.pi)).sum() - torch.logdet(jac)
    assert torch.allclose(log_q[0], expected, atol=1e-10)
