"""Copy detection, the extraction attack, text n-grams, bias measures and `genlab audit` on small runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from genlab.audit.bias import class_balance, demographic_parity, gender_representation, per_class_accuracy
from genlab.audit.memorization import copy_scores, extraction_attack, tiled_distances, verbatim_ngrams
from tests.test_cli import FAST, assert_one_line_error, run_cli


def test_tiled_distance_by_hand():
    a = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    b = a.clone()
    b[0, 0, :2, :2] = 255  # one 2x2 tile of a 4x4 grid differs completely
    assert float(tiled_distances(a, b, tiles=4)[0, 0]) == pytest.approx(1.0)
    assert float((a.double() - b.double()).div(255).pow(2).mean().sqrt()) == pytest.approx(0.25)  # plain RMS


def test_copies_are_flagged_and_fresh_samples_are_not():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (200, 1, 8, 8), generator=g, dtype=torch.uint8)
    test = torch.randint(0, 256, (50, 1, 8, 8), generator=g, dtype=torch.uint8)
    copies = (train[:30].int() + torch.randint(-3, 4, (30, 1, 8, 8), generator=g)).clamp(0, 255).to(torch.uint8)
    fresh = torch.randint(0, 256, (30, 1, 8, 8), generator=g, dtype=torch.uint8)
    res = copy_scores(torch.cat([copies, fresh]), train, test)
    assert res["flagged"] == 30 and res["test_flagged_share"] == 0.0
    assert all(p["flagged"] and p["train"] == p["sample"] for p in res["pairs"])
    pool = torch.cat([train[7:8].expand(12, -1, -1, -1), fresh])
    ext = extraction_attack(pool, train, clique=10)
    assert ext["n_extracted"] == 1 and ext["clusters"][0]["train"] == 7 and ext["clusters"][0]["size"] == 12
    assert extraction_attack(fresh, train, clique=10)["n_clusters"] == 0


def test_extraction_finds_every_image_a_model_regenerates_even_when_all_generations_are_copies():
    """The "same image" distance comes from the training set's spacing, so a model that does nothing but copy
    (every generation a near-exact copy) still has each copied image found once."""
    g = torch.Generator().manual_seed(1)
    train = torch.randint(0, 256, (100, 1, 8, 8), generator=g, dtype=torch.uint8)
    pool = train[[3, 50, 97]].repeat_interleave(12, 0).int() + torch.randint(-3, 4, (36, 1, 8, 8), generator=g)
    ext = extraction_attack(pool.clamp(0, 255).to(torch.uint8), train, clique=10)
    assert sorted(c["train"] for c in ext["clusters"]) == [3, 50, 97] and ext["n_extracted"] == 3
    assert [c["size"] for c in ext["clusters"]] == [12, 12, 12]


def test_verbatim_ngrams():
    train = np.arange(100)
    res = verbatim_ngrams([list(range(10, 40)), [99] * 30], train, n=8)
    assert res["samples_with_copy"] == 0.5 and res["ngram_share"] == pytest.approx(0.5)


def test_bias_measures_by_hand():
    from scipy.stats import chisquare

    cb = class_balance([0, 0, 0, 1], [0.5, 0.5])
    assert cb["tv"] == pytest.approx(0.25) and cb["kl"] == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert cb["chi2_p_value"] == pytest.approx(chisquare([3, 1], [2, 2]).pvalue) and cb["most_over"] == 0
    pa = per_class_accuracy([0, 1, 1, 1], [0, 0, 1, 1], 2, reference=[1.0, 0.5])
    assert pa["per_class"] == [0.5, 1.0] and pa["gap"] == 0.5 and pa["relative_to_classifier"] == [0.5, 2.0]
    dp = demographic_parity(["a", "a", "b", "b", "b"], [1, 0, 1, 1, 1])
    assert dp["rates"] == {"a": 0.5, "b": 1.0} and dp["difference"] == 0.5 and dp["ratio"] == 0.5
    g = gender_representation(["She said he and his brother left.", "Her mother"])
    assert g["counts"] == {"female": 3, "male": 3} and g["representation_tv"] == 0.0


def test_audit_writes_card_and_report(tmp_path, capsys):
    run = tmp_path / "vae"
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", run, *FAST, "--iwae-k", "2"], capsys)
    assert code == 0, err
    for _ in range(2):  # a second audit replaces the report section instead of adding one
        code, _, err = run_cli(["audit", run, "--samples", "60", "--members", "20"], capsys)
        assert code == 0, err
    res = json.loads((run / "audit.json").read_text())
    assert 0 <= res["memorization"]["flagged_share"] <= 1 and "extraction" in res["memorization"]
    assert 0 <= res["privacy"]["membership"]["likelihood_auc"] <= 1 and "dcr" in res["privacy"]
    assert len(res["bias"]["per_class_accuracy"]["per_class"]) == 10
    card = (run / "MODEL_CARD.md").read_text()
    for heading in ("## Data", "## Intended use", "## Metrics", "## Audit", "## Known limitations"):
        assert heading in card
    assert "membership inference AUC" in card
    page = (run / "report.html").read_text()
    assert page.count("<h2>Audit</h2>") == 1 and "copy-like" in page
    code, _, err = run_cli(["audit", run, "--samples", "5"], capsys)
    assert_one_line_error(code, err, "--samples must be at least 20")


def test_audit_of_a_text_run(tmp_path, capsys):
    from tests.conftest import TINY

    run = tmp_path / "gpt"
    args = ["train", "gpt", "--data", "lee", "--block-size", "16", "--out", run, "--max-steps", "1", "--batch-size",
            "4", "--quiet", "--device", "cpu", "--eval-every", "0", "--n-samples", "1"]
    for k, v in TINY["gpt"].items():
        args += [f"--{k.replace('_', '-')}", v]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    code, _, err = run_cli(["audit", run, "--samples", "40", "--members", "10"], capsys)
    assert code == 0, err
    res = json.loads((run / "audit.json").read_text())
    assert "verbatim" in res["memorization"] and 0 <= res["privacy"]["membership"]["likelihood_auc"] <= 1
    assert "gender_training" in res["bias"]
