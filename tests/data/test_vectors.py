"""Vector data: fixed built-in splits, standardization, routing of --data to the right modality, a vector run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import genlab
from genlab.config import build
from genlab.data import data_kind, modality
from genlab.data.vectors import VectorDataConfig, load_vectors
from genlab.errors import DataError
from genlab.report.grids import scatter


@pytest.mark.parametrize("name", ["moons", "rings"])
def test_builtin_split_is_fixed(name):
    train, test, prep = load_vectors(VectorDataConfig(data=name))
    assert train.x.shape == (5000, 2) and test.x.shape == (1000, 2) and train.x.dtype == torch.float32
    assert train.y is None and train.spec.kind == "vector" and train.spec.shape == (2,)
    again, _, _ = load_vectors(VectorDataConfig(data=name))
    assert torch.equal(train.x, again.x) and not prep["standardized"]


def test_rings_radii_and_standardize():
    train, _, _ = load_vectors(VectorDataConfig(data="rings"))
    r = train.x.norm(dim=1).numpy()
    assert min(np.abs(r[:, None] - np.array([0.75, 1.5, 2.25])).min(1)) < 0.3
    assert np.abs(r[:, None] - np.array([0.75, 1.5, 2.25])).min(1).mean() < 0.06
    std, _, prep = load_vectors(VectorDataConfig(data="moons", standardize=True, max_examples=1000))
    assert len(std) == 1000 and prep["standardized"] and len(prep["mean"]) == 2
    full, _, _ = load_vectors(VectorDataConfig(data="moons", standardize=True))
    assert torch.allclose(full.x.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(full.x.std(0), torch.ones(2), atol=1e-3)


def test_data_selects_the_modality():
    kinds = genlab.MODELS["flow"].data_kinds
    assert data_kind("moons", kinds) == "vector" and data_kind("rings", kinds) == "vector"
    assert data_kind("digits", kinds) == "image" and data_kind("some/folder", kinds) == "image"
    assert data_kind(None, kinds) == kinds[0]
    assert data_kind("digits", ("image",)) == "image"
    with pytest.raises(DataError, match="vector data"):
        data_kind("moons", ("image",))
    with pytest.raises(DataError, match="not a vector dataset"):
        load_vectors(VectorDataConfig(data="digits"))
    from genlab.api import option_classes

    assert option_classes("flow", "moons")[1] is VectorDataConfig
    assert option_classes("flow", "digits")[1] is modality("image").config_cls


def test_vector_flow_run_trains_evaluates_and_samples(tmp_path):
    run = genlab.train("flow", "rings", out=tmp_path / "run", max_steps=4, batch_size=32, quiet=True, device="cpu",
                       eval_every=0, steps=2, hidden=8, vector_layer="affine")
    assert (tmp_path / "run" / "samples.png").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["spec"]["kind"] == "vector"
    res = genlab.evaluate(tmp_path / "run", max_examples=50)
    assert res["likelihood"] == "exact" and res["n_examples"] == 50 and np.isfinite(res["nll_nats"])
    loaded = genlab.load(tmp_path / "run", device="cpu")
    a, b = genlab.sample(run.model, 5, seed=1), genlab.sample(loaded, 5, seed=1, temperature=1.0)
    assert a.shape == (5, 2) and a.dtype == torch.float32 and torch.equal(a, b)
    with pytest.raises(DataError):
        genlab.train("vae", "moons", out=tmp_path / "bad", max_steps=1, quiet=True)


def test_scatter_renders_points():
    img = scatter(torch.randn(200, 2), size=64)
    assert img.shape == (64, 64) and img.dtype == np.uint8 and img.min() < 255
    mod = modality("vector")
    assert build(mod.config_cls, {"data": "rings"}).data == "rings"
