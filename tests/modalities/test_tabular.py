"""The tabular modality end to end through the CLI and the API: train on a user CSV, sample CSV/Parquet (same seed,
same bytes), conditions, constraints, missing values, evaluation, compare, and every bad input as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas", reason="needs the tabular extra")

import genlab  # noqa: E402
from genlab.modalities.tabular import sample_frame  # noqa: E402
from tests.conftest import TINY  # noqa: E402
from tests.test_cli import assert_one_line_error, run_cli  # noqa: E402

FAST = ["--max-steps", "30", "--batch-size", "32", "--quiet", "--device", "cpu", "--eval-every", "0",
        "--n-samples", "8"]


def patients(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    ward = rng.choice(["icu", "general", "surgery"], n, p=[0.2, 0.5, 0.3])
    los = np.round(rng.gamma(2, 2, n) + (ward == "icu") * 3, 1)
    bmi = np.round(rng.normal(26, 4, n), 1)
    bmi[rng.random(n) < 0.25] = np.nan
    outcome = np.where(rng.random(n) < 0.1 + 0.3 * (ward == "icu"), "died", "home")
    return pd.DataFrame({"age": age, "ward": ward, "sex": rng.choice(["f", "m"], n), "los": los, "bmi": bmi,
                         "outcome": outcome})


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("tab") / "patients.csv"
    patients().to_csv(p, index=False)
    return p


@pytest.fixture(scope="module")
def vae_run(csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("tabrun") / "vae"
    args = ["train", "vae", "--data", csv, "--target", "outcome", "--categorical", "ward,sex", "--out", out,
            "--constraint", "los > 0", "--constraint", "age >= 18", "--hidden", "32", "--latent-dim", "4", *FAST]
    try:
        genlab.cli.main([str(a) for a in args])
    except SystemExit as e:
        assert e.code in (0, None)
    return out


def test_train_sample_csv_parquet_same_seed_same_bytes(vae_run, tmp_path, capsys):
    cfg = json.loads((vae_run / "config.json").read_text())
    assert cfg["spec"]["kind"] == "tabular" and cfg["spec"]["num_classes"] == 2  # conditional on the target
    assert (vae_run / "table.json").is_file() and (vae_run / "samples.csv").is_file()
    for name in ("a.csv", "b.csv"):
        code, _, err = run_cli(["sample", vae_run, "-n", "300", "--seed", "3", "--out", tmp_path / name], capsys)
        assert code == 0, err
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    df = pd.read_csv(tmp_path / "a.csv")
    real = patients()
    assert list(df.columns) == list(real.columns) and len(df) == 300
    assert set(df["ward"]) <= set(real["ward"]) and set(df["outcome"]) <= {"died", "home"}
    assert (df["los"] > 0).all() and (df["age"] >= 18).all()  # the run's constraints hold in every row
    assert df["age"].between(real["age"].min(), real["age"].max()).all() and (df["age"] % 1 == 0).all()
    assert df["bmi"].isna().any() and df["bmi"].dropna().between(real["bmi"].min(), real["bmi"].max()).all()
    code, _, err = run_cli(["sample", vae_run, "-n", "50", "--out", tmp_path / "s.parquet"], capsys)
    assert code == 0, err
    pq = pd.read_parquet(tmp_path / "s.parquet")
    assert len(pq) == 50 and str(pq["age"].dtype) == "int64"


def test_conditions_exact_for_the_target_and_filtered_elsewhere(vae_run, tmp_path, capsys):
    code, _, err = run_cli(["sample", vae_run, "-n", "40", "--condition", "outcome=died,ward=icu",
                            "--out", tmp_path / "c.csv"], capsys)
    assert code == 0, err
    df = pd.read_csv(tmp_path / "c.csv")
    assert (df["outcome"] == "died").all() and (df["ward"] == "icu").all() and len(df) == 40
    na = sample_frame(vae_run, 10, seed=1, condition="bmi=NA")
    assert na["bmi"].isna().all()


@pytest.mark.parametrize("family", ["gan", "diffusion", "gpt"])
def test_steering_families_meet_conditions(family, csv, tmp_path):
    run = genlab.train(family, str(csv), out=tmp_path / family, max_steps=40, batch_size=32, quiet=True,
                       device="cpu", eval_every=0, n_samples=4, target="outcome", **TINY[family])
    opts = {"steps": 10} if family == "diffusion" else {}
    numbers = ",age=40" if family != "gan" else ""  # inpainting and forced tokens fix numbers too
    frame = sample_frame(run, 30, seed=0, condition="ward=surgery,sex=f" + numbers, **opts)
    assert (frame["ward"] == "surgery").all() and (frame["sex"] == "f").all() and len(frame) == 30
    if numbers:
        assert (frame["age"] == 40).all() and str(frame["age"].dtype) == "int64"
    assert genlab.MODELS[family].inpaints(run.spec.form)


def test_eval_rows_and_report(vae_run, capsys):
    code, out, err = run_cli(["eval", vae_run, "--samples", "100", "--folds", "2"], capsys)
    assert code == 0, err
    for needle in ("quality", "detection AUC", "utility macro_f1 on outcome", "membership-inference AUC",
                   "missing-rate error"):
        assert needle in out
    res = json.loads((vae_run / "eval.json").read_text())
    assert 0 < res["quality"] <= 1 and 0 <= res["detection"]["auc"] <= 1 and res["likelihood"] == "bound"
    assert res["adherence"]["boundary"] == 1.0 and res["adherence"]["category"] == 1.0
    assert set(res["missing"]["columns"]) == set(patients().columns)


def test_compare_on_a_table(vae_run, csv, tmp_path, capsys):
    code, _, err = run_cli(["compare", "--data", csv, "--runs", vae_run, "--out", tmp_path / "cmp",
                              "--samples", "80", "--folds", "2"], capsys)
    assert code == 0, err
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert "Fidelity and utility" in page and "Columns: real vs synthetic" in page
    assert "Correlation difference" in page
    res = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert 0 < res["runs"]["vae"]["flat"]["quality"] <= 1


def test_missing_values_of_penguins_are_modelled(tmp_path):
    run = genlab.train("vae", "penguins", out=tmp_path / "p", max_steps=200, batch_size=64, quiet=True,
                       device="cpu", eval_every=0, n_samples=4, hidden=64, latent_dim=8)
    frame = sample_frame(run, 3000, seed=0)
    real = genlab.api.load_splits(run).train.frame
    for col in ("sex", "bill_length_mm"):
        assert frame[col].isna().mean() == pytest.approx(real[col].isna().mean(), abs=0.03)
    assert str(frame["year"].dtype) == "int64" and set(frame["year"]) <= {2007, 2008, 2009}
    x = genlab.sample(run, 5, seed=0)
    assert isinstance(x, torch.Tensor) and x.shape == (5, run.spec.dims)


def test_bad_inputs_are_one_line_errors(csv, vae_run, tmp_path, capsys):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3,4,5\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("a,b\n1,caf\xe9\n".encode("latin-1"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    blank = tmp_path / "blank.csv"
    pd.DataFrame({"a": range(20), "b": [None] * 20}).to_csv(blank, index=False)
    ids = tmp_path / "ids.csv"
    pd.DataFrame({"id": [f"p{i}" for i in range(30)], "x": range(30)}).to_csv(ids, index=False)
    train = ["train", "vae", "--out", tmp_path / "never", *FAST]
    cases = [
        ([*train, "--data", ragged], "ragged"),
        ([*train, "--data", latin], "not UTF-8"),
        ([*train, "--data", empty], "empty"),
        ([*train, "--data", blank], "all 20 values missing"),
        ([*train, "--data", ids], "too many to model as categories"),
        ([*train, "--data", csv, "--target", "nope"], "no column 'nope'"),
        ([*train, "--data", csv, "--constraint", "los > 5"], "violated by"),
        ([*train, "--data", csv, "--constraint", "speed > 0"], "no column 'speed'"),
        (["sample", vae_run, "--condition", "ward=moon", "--out", tmp_path / "x.csv"], "not a value of ward"),
        (["sample", vae_run, "--condition", "colour=red", "--out", tmp_path / "x.csv"], "no column 'colour'"),
        (["sample", vae_run, "--condition", "age=200", "--out", tmp_path / "x.csv"], "outside the training range"),
        (["sample", vae_run, "--out", tmp_path / "x.png"], "--format must be csv or tsv or parquet"),
    ]
    for args, needle in cases:
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, needle)
    assert not (tmp_path / "never").exists() and not (tmp_path / "x.csv").exists()
