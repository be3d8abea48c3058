"""One contract test parametrized over every (family, modality) pair a family declares (cf. zuko's ``test_flows``),
and one over every registered modality."""

from __future__ import annotations

import pytest
import torch

import genlab
from genlab.config import build
from genlab.core import MODELS, Batch
from genlab.data import ArrayDataset
from genlab.errors import CapabilityError
from genlab.trainer import TrainConfig, Trainer
from tests.conftest import DATA, TINY, family_modalities, form_of

FAMILIES = list(MODELS)
PAIRS = family_modalities()
PAIR_IDS = [f"{f}-{k}" for f, k in PAIRS]


def _model(family: str, spec):
    return genlab.create(family, spec, **TINY[family])


def test_every_family_has_tiny_config_and_every_modality_data():
    assert FAMILIES, "no family registered"
    for family in FAMILIES:
        assert family in TINY, f"add a tiny config for {family} to tests/conftest.py"
        assert any(f == family for f, _ in PAIRS), f"no registered modality produces what {family} models"
    for kind, _ in genlab.MODALITIES.ordered():
        assert kind in DATA, f"add a small {kind} dataset to DATA in tests/conftest.py"


def test_pairs_cover_both_forms_of_flow():
    assert {k for f, k in PAIRS if f == "flow"} >= {"image", "vector"}


@pytest.mark.parametrize(("family", "kind"), PAIRS, ids=PAIR_IDS)
def test_loss_decreases_on_a_fixed_batch(family, kind, splits):
    train, _ = splits[kind, form_of(family, kind)]
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
    assert last < first, f"{family} on {kind}: {key} did not fall ({first:.4f} -> {last:.4f})"


@pytest.mark.parametrize(("family", "kind"), PAIRS, ids=PAIR_IDS)
def test_sample_shape_dtype_range(family, kind, splits):
    train, _ = splits[kind, form_of(family, kind)]
    model = _model(family, train.spec).eval()
    g = torch.Generator().manual_seed(0)
    x = model.sample(5, generator=g)
    assert x.shape[0] == 5 and x.shape[1:] == train.spec.shape
    assert x.dtype == train.x.dtype
    if train.spec.levels:  # discrete data: every value one of the levels
        assert int(x.min()) >= 0 and int(x.max()) < train.spec.levels
    again = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again), "same generator seed must give the same samples"
    if model.conditional:
        y = model.sample(4, torch.tensor(2), generator=g)
        assert y.shape == (4, *train.spec.shape)


@pytest.mark.parametrize(("family", "kind"), PAIRS, ids=PAIR_IDS)
def test_save_load_gives_identical_samples(family, kind, tmp_path):
    name, opts = DATA[kind]
    run = genlab.train(family, name, out=tmp_path / "run", max_steps=3, batch_size=16, quiet=True,
                       device="cpu", eval_every=0, n_samples=4, **opts, **TINY[family])
    for f in ("config.json", "model.safetensors", "metrics.jsonl"):
        assert (tmp_path / "run" / f).is_file(), f
    samples = f"samples.{genlab.MODALITIES[kind].sample_formats[0]}"
    assert (tmp_path / "run" / samples).is_file(), samples
    loaded = genlab.load(tmp_path / "run", device="cpu")
    assert isinstance(loaded, genlab.Run) and loaded.modality is genlab.MODALITIES[kind]
    assert loaded.spec == run.spec and loaded.config["family"] == family
    a = genlab.sample(run, 6, seed=7)
    b = genlab.sample(loaded, 6, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, genlab.sample(loaded, 6, seed=8)), "different seeds should differ"


@pytest.mark.parametrize(("family", "kind"), PAIRS, ids=PAIR_IDS)
def test_log_prob_consistent_with_capabilities(family, kind, splits):
    train, _ = splits[kind, form_of(family, kind)]
    model = _model(family, train.spec).eval()
    assert model.likelihood == MODELS[family].likelihood_for(train.spec.form)
    x = train.x[:6]
    y = None if train.y is None else train.y[:6]
    if model.likelihood == "none":
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


def test_capabilities_are_class_constants(splits):
    """No instance overwrites a class flag; a likelihood that differs by form is declared per form."""
    for family, kind in PAIRS:
        train, _ = splits[kind, form_of(family, kind)]
        model = _model(family, train.spec)
        flags = ("exact_likelihood", "likelihood_bound", "latent_space", "inpainting", "streaming")
        assert not set(flags) & set(vars(model)), f"{family} sets a capability on its instance"
    assert MODELS["flow"].likelihood_for("image") == "bound" and MODELS["flow"].likelihood_for("vector") == "exact"


# -- the modality contract -------------------------------------------------------------------------

MODALITY_FAMILY = {kind: next(f for f, k in PAIRS if k == kind) for kind, _ in genlab.MODALITIES.ordered()}


@pytest.mark.parametrize("kind", list(MODALITY_FAMILY))
def test_modality_load_batch_write_render_evaluate(kind, tmp_path):
    """load → batch → write samples → render → evaluate returns the keys the modality declares."""
    mod = genlab.MODALITIES[kind]
    family = MODALITY_FAMILY[kind]
    name, opts = DATA[kind]
    assert mod.forms and mod.sample_formats and mod.kind == kind
    splits = mod.load(build(mod.config_cls, {"data": name, **opts}), form_of(family, kind))
    assert splits.train.spec.kind == kind and splits.train.spec.form in mod.forms
    assert splits.test.spec == splits.train.spec and len(splits.train) > 0 and len(splits.test) > 0
    x, y = splits.train.batch(0, 8, seed=0)
    x2, _ = splits.train.batch(0, 8, seed=0)
    assert torch.equal(x, x2) and x.shape == (8, *splits.train.spec.shape)
    assert y is None or y.shape == (8,)
    run = genlab.train(family, name, out=tmp_path / "run", max_steps=2, batch_size=8, quiet=True, device="cpu",
                       eval_every=0, n_samples=4, **opts, **TINY[family])
    assert set(mod.artifact_files) <= {p.name for p in (tmp_path / "run").iterdir()}
    samples = genlab.sample(run, 4, seed=0)
    for fmt in mod.sample_formats:
        path = genlab.api.save_samples(run, samples, tmp_path / f"s.{fmt}")
        assert path.is_file() and path.stat().st_size > 0
    mime, blob = mod.render(run, samples)
    assert "/" in mime and len(blob) > 0
    if mime.startswith("image/png"):
        assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    options = {"samples": 20} if "samples" in {f for f in mod.eval_options_cls.__dataclass_fields__} else {}
    report = genlab.evaluate(run, max_examples=16, **options)
    assert set(mod.eval_keys) <= set(report), f"{kind}: missing {set(mod.eval_keys) - set(report)}"
    rows = mod.rows(report)
    assert rows and all(isinstance(a, str) and isinstance(b, str) for a, b in rows)
    assert (tmp_path / "run" / "eval.json").is_file()


@pytest.mark.parametrize(("family", "kind", "form"), [
    ("vae", "tabular", "table"), ("vae", "music", "grid"), ("vae", "molecule", "tokens"), ("vae", "text", "tokens"),
    ("vae", "image", "image"), ("gpt", "tabular", "tokens"), ("gpt", "music", "tokens"), ("diffusion", "music", "grid"),
    ("diffusion", "tabular", "table"), ("flow", "vector", "vector"), ("flow", "tabular", "table"),
])
def test_a_family_models_each_modality_in_its_preferred_form(family, kind, form):
    from genlab.api import pick_form

    assert pick_form(genlab.MODELS[family], genlab.MODALITIES[kind]) == form
