"""Vector data: fixed built-in splits, standardization, routing of --data to the right modality, a vector run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import genlab
from genlab.config import build
from genlab.errors import DataError
from genlab.modalities import modality, resolve_kind
from genlab.modalities.vector import VectorDataConfig, load_vectors
from genlab.report.grids import scatter


def _load(**kw):
    s = load_vectors(VectorDataConfig(**kw))
    return s.train, s.test, s.preprocessing


@pytest.mark.parametrize("name", ["moons", "rings"])
def test_builtin_split_is_fixed(name):
    train, test, prep = _load(data=name)
    assert train.x.shape == (5000, 2) and test.x.shape == (1000, 2) and train.x.dtype == torch.float32
    assert train.y is None and train.spec.kind == "vector" and train.spec.shape == (2,)
    again, _, _ = _load(data=name)
    assert torch.equal(train.x, again.x) and not prep["standardized"]


def test_rings_radii_and_standardize():
    train, _, _ = _load(data="rings")
    r = train.x.norm(dim=1).numpy()
    assert min(np.abs(r[:, None] - np.array([0.75, 1.5, 2.25])).min(1)) < 0.3
    assert np.abs(r[:, None] - np.array([0.75, 1.5, 2.25])).min(1).mean() < 0.06
    std, _, prep = _load(data="moons", standardize=True, max_examples=1000)
    assert len(std) == 1000 and prep["standardized"] and len(prep["mean"]) == 2
    full, _, _ = _load(data="moons", standardize=True)
    assert torch.allclose(full.x.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(full.x.std(0), torch.ones(2), atol=1e-3)


def test_data_selects_the_modality():
    forms = genlab.MODELS["flow"].data_forms
    assert resolve_kind("moons", forms) == "vector" and resolve_kind("rings", forms) == "vector"
    assert resolve_kind("digits", forms) == "image"
    assert resolve_kind(None, forms) == "image"
    assert resolve_kind("digits", ("image",)) == "image"
    with pytest.raises(DataError, match="vector data"):
        resolve_kind("moons", ("image",))
    with pytest.raises(DataError, match="does not exist"):
        resolve_kind("some/folder", forms)
    with pytest.raises(DataError, match="not a vector dataset"):
        _load(data="digits")
    from genlab.api import option_classes

    assert option_classes("flow", "moons")[1] is VectorDataConfig
    assert option_classes("flow", "digits")[1] is modality("image").config_cls


def test_vector_flow_run_trains_evaluates_and_samples(tmp_path):
    run = genlab.train("flow", "rings", out=tmp_path / "run", max_steps=4, batch_size=32, quiet=True, device="cpu",
                       eval_every=0, steps=2, hidden=8, vector_layer="affine")
    assert (tmp_path / "run" / "samples.png").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["spec"]["kind"] == "vector"
    res = genlab.evaluate(tmp_path / "run", max_examples=50, samples=200)
    assert res["likelihood"] == "exact" and res["n_examples"] == 50 and np.isfinite(res["nll_nats"])
    s = res["samples"]
    assert s["n_samples"] == 200 and s["fid"] >= 0 and 0 <= s["precision"] <= 1 and 0 <= s["coverage"] <= 1
    loaded = genlab.load(tmp_path / "run", device="cpu")
    a, b = genlab.sample(run, 5, seed=1), genlab.sample(loaded, 5, seed=1, temperature=1.0)
    assert a.shape == (5, 2) and a.dtype == torch.float32 and torch.equal(a, b)
    with pytest.raises(DataError):
        genlab.train("vae", "moons", out=tmp_path / "bad", max_steps=1, quiet=True)


def test_scatter_renders_points():
    img = scatter(torch.randn(200, 2), size=64)
    assert img.shape == (64, 64) and img.dtype == np.uint8 and img.min() < 255
    mod = modality("vector")
    assert build(mod.config_cls, {"data": "rings"}).data == "rings"
