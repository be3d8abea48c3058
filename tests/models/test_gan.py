"""GAN: two disjoint param groups, hinge and WGAN-GP objectives, projection conditioning, EMA sampling."""

from __future__ import annotations

import pytest
import torch

import genlab
from genlab.checkpoint import read_tensors
from genlab.core import Batch
from tests.conftest import TINY


def test_param_groups_are_disjoint_and_complete(splits):
    train, _ = splits["image"]
    model = genlab.create("gan", train.spec, **TINY["gan"])
    groups = model.param_groups()
    assert list(groups) == ["d", "g"]
    d, g = ({id(p) for p in ps} for ps in groups.values())
    assert not d & g and d | g == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("objective", ["hinge", "wgan-gp"])
def test_objectives_give_gradients_only_where_expected(objective, splits):
    train, _ = splits["image"]
    model = genlab.create("gan", train.spec, **{**TINY["gan"], "objective": objective})
    b = Batch(train.x[:8], train.y[:8], seed=0)
    loss, logs = model.loss(b, "d")
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None for p in model.generator.parameters())
    assert (objective == "wgan-gp") == ("gp" in logs)
    model.zero_grad()
    model.loss(b, "g")[0].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())


def test_projection_discriminator_uses_labels(splits):
    train, _ = splits["image"]
    model = genlab.create("gan", train.spec, **TINY["gan"])
    with torch.no_grad():
        torch.nn.init.normal_(model.discriminator.embed.parametrizations.weight.original)
        v = torch.randn(4, 1, 8, 8)
        a = model.discriminator(v, torch.tensor([0, 0, 0, 0]))
        b = model.discriminator(v, torch.tensor([1, 1, 1, 1]))
    assert not torch.allclose(a, b)


def test_samples_come_from_ema_weights(tmp_path):
    run = genlab.train("gan", "digits", out=tmp_path / "r", max_steps=3, batch_size=16, quiet=True, device="cpu",
                       eval_every=0, ema_decay=0.5, **TINY["gan"])
    weights, meta = read_tensors(tmp_path / "r" / "model.safetensors")
    state, _ = read_tensors(tmp_path / "r" / "train_state.safetensors")
    assert meta["ema"] == "True"
    key = next(k for k in weights if k.startswith("generator.") and k.endswith("weight"))
    assert torch.equal(weights[key], state["ema." + key])
    assert not torch.equal(weights[key], state["model." + key])
    raw = genlab.load(tmp_path / "r", ema=False)
    assert torch.equal(dict(raw.model.named_parameters())[key], state["model." + key])
    assert run.model.conditional
