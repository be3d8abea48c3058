"""One contract test parametrized over every registered family (cf. zuko's ``test_flows``)."""

from __future__ import annotations

import pytest
import torch

import genlab
from genlab.config import build
from genlab.core import MODELS, Batch
from genlab.data import ArrayDataset
from genlab.errors import CapabilityError
from genlab.trainer import TrainConfig, Trainer
from tests.conftest import DATA, TINY

FAMILIES = list(MODELS)


def _model(family: str, spec):
    return genlab.create(family, spec, **TINY[family])


def test_every_family_has_tiny_config_and_data():
    assert FAMILIES, "no family registered"
    for family in FAMILIES:
        assert family in TINY, f"add a tiny config for {family} to tests/conftest.py"
        for kind in MODELS[family].data_kinds:
            assert kind in DATA, f"add a small {kind} dataset to DATA in tests/conftest.py"


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_decreases_on_a_fixed_batch(family, splits):
    train, _ = splits[MODELS[family].data_kinds[0]]
    fixed = ArrayDataset(train.x[:32], None if train.y is None else train.y[:32], train.spec)
    model = _model(family, train.spec)
    defaults = MODELS[family].train_defaults
    cfg = build(TrainConfig, {**defaults, "batch_size": 32, "max_steps": 40, "schedule": "constant",
                              "quiet": True, "device": "cpu"})
    group = model.progress_group
    key = "loss" if group == "main" else f"loss/{group}"
    seen: list[float] = []
    Trainer(model, fixed, cfg, callbacks=[lambda t, s, logs: seen.append(logs[key])]).fit()
    assert len(seen) == 40 and all(torch.isfinite(torch.tensor(seen)))
    first, last = sum(seen[:3]) / 3, sum(seen[-5:]) / 5
    assert last < first, f"{family}: {key} did not fall ({first:.4f} -> {last:.4f})"


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_shape_dtype_range(family, splits):
    train, _ = splits[MODELS[family].data_kinds[0]]
    model = _model(family, train.spec).eval()
    g = torch.Generator().manual_seed(0)
    x = model.sample(5, generator=g)
    assert x.shape == (5, *train.spec.shape)
    assert x.dtype == train.x.dtype
    if train.x.dtype == torch.uint8:
        assert x.min() >= 0 and x.max() <= 255
    if train.spec.vocab_size:  # token data: ids inside the vocabulary
        assert x.min() >= 0 and x.max() < train.spec.vocab_size
    again = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again), "same generator seed must give the same samples"
    if model.conditional:
        y = model.sample(4, torch.tensor(2), generator=g)
        assert y.shape == (4, *train.spec.shape)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_gives_identical_samples(family, tmp_path):
    kind = MODELS[family].data_kinds[0]
    name, opts = DATA[kind]
    run = genlab.train(family, name, out=tmp_path / "run", max_steps=3, batch_size=16, quiet=True,
                       device="cpu", eval_every=0, **opts, **TINY[family])
    for f in ("config.json", "model.safetensors", "metrics.jsonl"):
        assert (tmp_path / "run" / f).is_file(), f
    samples = "samples.txt" if kind == "text" else "samples.png"
    assert (tmp_path / "run" / samples).is_file(), samples
    loaded = genlab.load(tmp_path / "run", device="cpu")
    a = genlab.sample(run.model, 6, seed=7)
    b = genlab.sample(loaded, 6, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, genlab.sample(loaded, 6, seed=8)), "different seeds should differ"


@pytest.mark.parametrize("family", FAMILIES)
def test_log_prob_consistent_with_capabilities(family, splits):
    train, _ = splits[MODELS[family].data_kinds[0]]
    model = _model(family, train.spec).eval()
    x = train.x[:6]
    y = None if train.y is None else train.y[:6]
    if not (model.exact_likelihood or model.likelihood_bound):
        with pytest.raises(CapabilityError):
            model.log_prob(x, y)
        return
    lp = model.log_prob(x, y)
    assert lp.shape == (6,) and torch.isfinite(lp).all()
    assert torch.allclose(lp, model.log_prob(x, y)), "log_prob must be deterministic"
    if not x.dtype.is_floating_point:  # discrete data: probabilities (and lower bounds) are <= 1
        assert (lp <= 1e-3).all()


def test_batch_noise_is_per_example():
    """Training noise of an example does not depend on how the global batch is sharded."""
    x = torch.zeros(8, 3)
    full = Batch(x, seed=3).randn(4)
    halves = torch.cat([Batch(x[:4], seed=3, offset=0, global_size=8).randn(4),
                        Batch(x[4:], seed=3, offset=4, global_size=8).randn(4)])
    assert torch.equal(full, halves)


@pytest.mark.parametrize("family", [f for f in FAMILIES if MODELS[f].likelihood_by_kind])
def test_likelihood_by_kind_matches_the_instances(family, splits):
    for kind, how in MODELS[family].likelihood_by_kind.items():
        train, _ = splits[kind]
        model = _model(family, train.spec)
        assert (model.exact_likelihood, model.likelihood_bound) == (how == "exact", how == "bound"), kind
