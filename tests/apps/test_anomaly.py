"""Anomaly scores: the AUROC formula against scikit-learn, each score's definition, per-document text scores, the
CLI, and bad inputs."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import genlab
from genlab.apps.anomaly import anomaly_scores, auroc, log_likelihood
from genlab.errors import CapabilityError, ConfigError
from genlab.modalities import Examples
from tests.conftest import TINY
from tests.test_cli import assert_one_line_error, run_cli


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    normal = rng.integers(0, 6, 40).astype(float)  # many ties
    anomalous = rng.integers(2, 9, 25).astype(float)
    ref = roc_auc_score(np.r_[np.zeros(40), np.ones(25)], np.r_[normal, anomalous])
    assert auroc(normal, anomalous) == pytest.approx(ref, abs=1e-12)
    assert auroc([0.0, 1.0], [2.0, 3.0]) == 1.0 and auroc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert auroc([1.0, 1.0], [1.0]) == 0.5
    with pytest.raises(ValueError):
        auroc([], [1.0])


def _examples(run, n=24):
    ex = run.modality.read_examples(run, None)
    return Examples(ex.x[:n], ex.names[:n], None if ex.y is None else ex.y[:n])


def test_scores_follow_their_definitions(tiny_runs):
    run, ref = tiny_runs["vae"], tiny_runs["pixelcnn"]
    ex = _examples(run)
    s = anomaly_scores(run, ex, reference=ref)
    assert list(s) == ["nll", "complexity", "ratio", "recon"]
    d = run.spec.dims
    lp = run.model.log_prob(ex.x).double()
    assert torch.allclose(s["nll"], -lp / (d * math.log(2)))
    bits = run.modality.complexity_bits(run, ex.x)
    assert torch.allclose(s["complexity"], s["nll"] - bits / d)
    ref_bpd = -ref.model.log_prob(ex.x).double() / (d * math.log(2))
    assert torch.allclose(s["ratio"], s["nll"] - ref_bpd)
    rec = run.model.from_latent(run.model.to_latent(ex.x))
    assert torch.allclose(s["recon"], ((rec.double() - ex.x.double()) / 255).pow(2).flatten(1).mean(1))


def test_conditional_models_sum_the_label_out(tiny_runs):
    run = tiny_runs["cvae"]
    x = _examples(run, 6).x
    per = torch.stack([run.model.log_prob(x, torch.full((6,), c)).double() for c in range(10)])
    assert torch.allclose(log_likelihood(run, x), torch.logsumexp(per, 0) - math.log(10))


def test_png_complexity_ranks_blank_below_noise(tiny_runs):
    run = tiny_runs["vae"]
    blank = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    noise = torch.randint(0, 256, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    bits = run.modality.complexity_bits(run, torch.cat([blank, noise]))
    assert bits[:2].max() < bits[2:].min()
    assert genlab.MODALITIES["vector"].complexity_bits(run, torch.zeros(2, 3)).shape == (2,)  # generic zlib


def test_invertible_latents_give_no_reconstruction_score(tiny_runs):
    run = tiny_runs["flow"]
    assert "recon" not in anomaly_scores(run, _examples(run, 4))
    with pytest.raises(CapabilityError, match="invertible"):
        anomaly_scores(run, _examples(run, 4), scores=["recon"])
    with pytest.raises(ConfigError, match="--reference"):
        anomaly_scores(run, _examples(run, 4), scores=["ratio"])


def test_text_is_scored_per_document(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("the cat sat on the mat. " * 6)
    (docs / "b.txt").write_text("zq xj vk " * 12)
    run = genlab.train("gpt", "lee", out=tmp_path / "gpt", max_steps=2, batch_size=8, quiet=True, device="cpu",
                       eval_every=0, n_samples=1, block_size=16, **TINY["gpt"])
    ex = run.modality.read_examples(run, docs)
    assert ex.names == ["a.txt", "b.txt"] and ex.units is not None and ex.x.shape[1] == 16
    s = anomaly_scores(run, ex)
    windows = ex.x[ex.units == 0]
    want = -run.model.log_prob(windows).double().mean() / (16 * math.log(2))
    assert s["nll"].shape == (2,) and s["nll"][0] == pytest.approx(float(want), rel=1e-5)


def test_cli_writes_csv_and_auroc(tiny_runs, tmp_path, capsys):
    run = tiny_runs["vae"]
    x = run.modality.read_examples(run, None).x[:20].numpy()
    noise = np.random.default_rng(0).integers(0, 256, (10, 1, 8, 8)).astype(np.uint8)
    np.savez(tmp_path / "normal.npz", x=x)
    np.savez(tmp_path / "odd.npz", x=noise)
    out = tmp_path / "scores.csv"
    code, text, err = run_cli(["anomaly", run.path, "--data", tmp_path / "normal.npz", "--anomalies",
                               tmp_path / "odd.npz", "--out", out, "--iwae-k", "2"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 30 and rows[0]["set"] == "normal" and rows[-1]["set"] == "anomaly"
    assert {"nll", "complexity", "recon"} <= set(rows[0]) and "AUROC" in text
    nll = np.array([float(r["nll"]) for r in rows])
    assert auroc(nll[:20], nll[20:]) > 0.9  # uniform noise is far less likely than digits, even after 8 steps


@pytest.mark.parametrize("case", ["gan", "bad-shape", "bad-score", "reference-shape", "bad-out"])
def test_cli_bad_inputs(case, tiny_runs, tmp_path, capsys):
    np.savez(tmp_path / "big.npz", x=np.zeros((2, 1, 12, 12), np.uint8))
    args, needle = {
        "gan": (["anomaly", tiny_runs["gan"].path], "no anomaly score"),
        "bad-shape": (["anomaly", tiny_runs["vae"].path, "--data", tmp_path / "big.npz"], "shape"),
        "bad-score": (["anomaly", tiny_runs["vae"].path, "--scores", "magic"], "unknown anomaly score"),
        "reference-shape": (["anomaly", tiny_runs["vae"].path, "--reference", tmp_path / "nope"], "does not exist"),
        "bad-out": (["anomaly", tiny_runs["vae"].path, "--out", tmp_path / "s.txt"], ".csv"),
    }[case]
    code, _, err = run_cli([*args, "--out", tmp_path / "s.csv"] if case != "bad-out" else args, capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "s.csv").exists()


def test_table_files_are_scored_with_the_runs_own_transforms(tmp_path):
    """Rows read from a file go through the run's fitted transforms: a shifted file scores as anomalous (with
    transforms refitted on it, it would look exactly like the training data)."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)

    def frame(n, shift=0.0):
        return pd.DataFrame({"a": rng.normal(shift, 1.0, n), "b": rng.normal(0.0, 1.0, n),
                             "c": rng.choice(["x", "y"], n)})

    frame(400).to_csv(tmp_path / "fit.csv", index=False)
    frame(60).to_csv(tmp_path / "near.csv", index=False)
    frame(60, shift=6.0).to_csv(tmp_path / "far.csv", index=False)
    run = genlab.train("vae", str(tmp_path / "fit.csv"), out=tmp_path / "run", max_steps=150, batch_size=64,
                       quiet=True, device="cpu", eval_every=0, n_samples=4, hidden=32, latent_dim=4)
    near = run.modality.read_examples(run, tmp_path / "near.csv")
    far = run.modality.read_examples(run, tmp_path / "far.csv")
    assert near.x.shape == far.x.shape == (60, run.spec.dims) and near.names[0] == "near.csv:0"
    sn, sa = anomaly_scores(run, near), anomaly_scores(run, far)
    assert auroc(sn["nll"], sa["nll"]) > 0.95
    pd.DataFrame({"a": [1.0] * 12}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(genlab.GenlabError, match="lacks the run's columns b, c"):
        run.modality.read_examples(run, tmp_path / "bad.csv")


def test_a_family_without_latents_on_tables_scores_by_likelihood_only(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    pd.DataFrame({"a": rng.normal(0, 1, 200), "b": rng.choice(["x", "y"], 200)}).to_csv(tmp_path / "t.csv",
                                                                                        index=False)
    run = genlab.train("diffusion", str(tmp_path / "t.csv"), out=tmp_path / "run", max_steps=5, batch_size=32,
                       quiet=True, device="cpu", eval_every=0, n_samples=4, num_timesteps=20, bound_timesteps=2,
                       mlp_widths=(32,))
    assert not run.model.has_latent_space and genlab.MODELS["diffusion"].latent_for("image")
    scores = anomaly_scores(run, run.modality.read_examples(run, tmp_path / "t.csv"))
    assert set(scores) == {"nll", "complexity"} and torch.isfinite(scores["nll"]).all()
    with pytest.raises(CapabilityError, match="diffusion run on table data has no latent space"):
        from genlab.apps.latent import interpolate

        x = run.modality.read_examples(run, tmp_path / "t.csv").x
        interpolate(run, x[:1], x[1:2], steps=3)
