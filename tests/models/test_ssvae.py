"""The semi-supervised VAE (M2): which labels are seen, the batches, the loss terms against their formulas, the
marginal likelihood, the classifier in `genlab eval`, and `--labels` errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import genlab
from genlab.core import Batch
from genlab.data.labels import UNLABELLED, labelled_subset, semi_supervised
from genlab.errors import ConfigError
from tests.conftest import TINY
from tests.test_cli import assert_one_line_error, run_cli


def test_labelled_subset_is_even_seeded_and_deterministic():
    y = torch.arange(100) % 4
    idx = labelled_subset(y, 10, seed=0)
    assert torch.equal(idx, labelled_subset(y, 10, seed=0)) and not torch.equal(idx, labelled_subset(y, 10, seed=1))
    assert torch.bincount(y[idx]).tolist() == [3, 3, 2, 2] and len(set(idx.tolist())) == 10
    with pytest.raises(ConfigError, match="more than the 100"):
        labelled_subset(y, 101)
    with pytest.raises(ConfigError, match="fewer than the 4 classes"):
        labelled_subset(y, 3)
    with pytest.raises(ConfigError, match="class 1"):
        labelled_subset(torch.tensor([0] * 10 + [1]), 4)


def test_semi_supervised_batches(splits):
    train, _ = splits["image"]
    ss = semi_supervised(train, 20, labelled_share=0.25)
    assert int((ss.y >= 0).sum()) == 20
    x, y = ss.batch(3, 16, seed=0)
    x2, y2 = ss.batch(3, 16, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert int((y >= 0).sum()) == 4 and int((y == UNLABELLED).sum()) == 12
    seen = torch.cat([ss.batch(s, 16, 0)[1][:4] for s in range(5)])  # 20 labelled draws: every label once
    assert sorted(seen.tolist()) == sorted(ss.labels[ss.labelled].tolist())


def _model(splits):
    train, _ = splits["image"]
    return genlab.create("ssvae", train.spec, **TINY["ssvae"]).eval(), train  # eval: no dropout in q(y|x)


def test_unlabelled_loss_sums_the_label_out(splits):
    model, train = _model(splits)
    x = train.x[:3]
    b = Batch(x, torch.full((3,), UNLABELLED), seed=5)
    loss, _ = model.loss(b)
    # by hand: U(x) = Σ_y q(y|x) (-L(x,y)) + Σ_y q log q with the same noise
    eps = Batch(x, None, seed=5).randn(10, model.config.latent_dim)
    feats, logits = model._features(x), model.classifier(x)
    elbo = torch.stack([model._elbo(x, feats, F.one_hot(torch.full((3,), c), 10).float(), eps[:, c])
                        for c in range(10)], 1)
    log_q = F.log_softmax(logits, 1)
    u = (log_q.exp() * (-elbo + log_q)).sum(1)
    assert float(loss.detach()) == pytest.approx(float(u.mean() / model.spec.dims), rel=1e-5)


def test_labelled_loss_adds_alpha_cross_entropy(splits):
    model, train = _model(splits)
    x, y = train.x[:4], train.y[:4]
    loss, logs = model.loss(Batch(x, y, seed=2))
    eps = Batch(x, None, seed=2).randn(10, model.config.latent_dim)[:, 0]
    elbo = model._elbo(x, model._features(x), F.one_hot(y, 10).float(), eps)
    ce = F.cross_entropy(model.classifier(x), y)
    want = (-elbo).mean() / model.spec.dims + model.config.alpha * ce
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5)
    assert logs["ce"] == pytest.approx(float(ce), rel=1e-5)


def test_marginal_log_prob_and_classify(splits):
    model, train = _model(splits)
    model.eval()
    x = train.x[:5]
    per = torch.stack([model.log_prob(x, torch.full((5,), c)) for c in range(10)])
    assert torch.allclose(model.log_prob(x), torch.logsumexp(per, 0) - math.log(10), atol=1e-4)
    p = model.classify(x)
    assert p.shape == (5, 10) and torch.allclose(p.sum(1), torch.ones(5))


def test_train_with_labels_and_eval_reports_the_classifier(tmp_path, capsys):
    opts = [f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in TINY["ssvae"].items() if k != "labels"]
    out = tmp_path / "ss"
    code, _, err = run_cli(["train", "ssvae", "--data", "digits", "--labels", "50", "--out", out, "--max-steps",
                            "3", "--batch-size", "16", "--quiet", "--eval-every", "0", *opts], capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["model"]["labels"] == 50
    code, text, err = run_cli(["eval", out, "--samples", "0", "--max-examples", "30"], capsys)
    assert code == 0, err
    res = json.loads((out / "eval.json").read_text())
    assert res["classifier"]["n_examples"] == 30 and 0 <= res["classifier"]["accuracy"] <= 1
    assert "classifier accuracy" in text


@pytest.mark.parametrize(("labels", "needle"), [("5000", "more than the 1433"), ("3", "fewer than the 10"),
                                                ("0", "--labels must be positive")])
def test_bad_labels_are_one_line(labels, needle, tmp_path, capsys):
    out = tmp_path / "ss"
    code, _, err = run_cli(["train", "ssvae", "--data", "digits", "--labels", labels, "--out", out, "--max-steps",
                            "1", "--quiet"], capsys)
    assert_one_line_error(code, err, needle)
    assert not out.exists()
