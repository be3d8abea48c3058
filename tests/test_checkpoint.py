"""Checkpoints: atomic writes, safetensors + JSON only (never pickle), version and family checks."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import genlab
from genlab import checkpoint as ckpt
from genlab.errors import CheckpointError
from tests.conftest import TINY


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "x.json"
    ckpt.write_json(p, {"a": 1})

    with pytest.raises(TypeError):
        ckpt.write_json(p, {"a": object()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert not list(tmp_path.glob("*.tmp"))
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask, "atomic writes keep the usual file mode"


def test_optimizer_and_rng_round_trip():
    w = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([w], lr=0.1)
    w.sum().backward()
    opt.step()
    tensors, js = ckpt.flatten_optimizer("o", opt.state_dict())
    back = ckpt.unflatten_optimizer("o", tensors, json.loads(json.dumps(js)))
    assert torch.equal(back["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    t, j = ckpt.rng_state()
    a = torch.rand(3)
    ckpt.set_rng_state(t, json.loads(json.dumps(j)))
    assert torch.equal(a, torch.rand(3))


def test_loading_never_unpickles(tmp_path, monkeypatch):
    genlab.train("vae", "digits", out=tmp_path / "r", max_steps=1, batch_size=8, quiet=True, device="cpu",
                 eval_every=0, **TINY["vae"])

    def forbidden(*a, **k):
        raise AssertionError("pickle used while loading a checkpoint")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    model = genlab.load(tmp_path / "r")
    assert model.family == "vae"
    genlab.train("vae", out=tmp_path / "r", resume=True, max_steps=2, quiet=True)


def test_refuses_newer_format_and_unknown_family(tmp_path):
    genlab.train("vae", "digits", out=tmp_path / "r", max_steps=1, batch_size=8, quiet=True, device="cpu",
                 eval_every=0, **TINY["vae"])
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    (tmp_path / "r" / "config.json").write_text(json.dumps({**cfg, "format_version": ckpt.FORMAT_VERSION + 1}))
    with pytest.raises(CheckpointError, match="newer genlab"):
        genlab.load(tmp_path / "r")
    (tmp_path / "r" / "config.json").write_text(json.dumps({**cfg, "family": "nope"}))
    with pytest.raises(CheckpointError, match="unknown family 'nope'"):
        genlab.load(tmp_path / "r")


def test_inconsistent_checkpoint_is_refused_on_resume(tmp_path):
    genlab.train("vae", "digits", out=tmp_path / "r", max_steps=1, batch_size=8, quiet=True, device="cpu",
                 eval_every=0, **TINY["vae"])
    js = json.loads((tmp_path / "r" / "train_state.json").read_text())
    (tmp_path / "r" / "train_state.json").write_text(json.dumps({**js, "step": 7}))
    with pytest.raises(CheckpointError, match="disagree"):
        genlab.train("vae", out=tmp_path / "r", resume=True, max_steps=9, quiet=True)


@pytest.mark.parametrize(("family", "data", "extra"), [("vae", "digits", {}), ("gpt", "lee", {"block_size": 16})])
def test_runs_written_in_format_1_still_load(family, data, extra, tmp_path, monkeypatch):
    """Format 1 had no spec form/levels (a text run's vocabulary was spec.vocab_size): such runs load, sample and
    evaluate as before."""
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    run = genlab.train(family, data, out=tmp_path / "r", max_steps=1, batch_size=8, quiet=True, device="cpu",
                       eval_every=0, n_samples=2, **extra, **TINY[family])
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    spec = cfg["spec"]
    old = {"kind": spec["kind"], "shape": spec["shape"], "num_classes": spec["num_classes"],
           "class_names": spec["class_names"], "vocab_size": spec["levels"] if family == "gpt" else 0}
    (tmp_path / "r" / "config.json").write_text(json.dumps({**cfg, "format_version": 1, "spec": old}))
    loaded = genlab.load(tmp_path / "r")
    assert loaded.spec == run.spec
    assert torch.equal(genlab.sample(loaded, 3, seed=2), genlab.sample(run, 3, seed=2))
    assert genlab.evaluate(loaded, max_examples=8, write=False, **({"samples": 0} if family == "vae" else {}))
