"""``genlab compare`` and the image metrics of ``genlab eval`` end to end, on tiny runs of digits."""

from __future__ import annotations

import json

import pytest

import genlab
from genlab.cli import main
from genlab.compare import compare, image_families
from genlab.errors import ConfigError
from tests.conftest import TINY

FAST = {"max_steps": 3, "batch_size": 16, "quiet": True, "device": "cpu", "eval_every": 0, "n_samples": 4}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))


def test_compare_trains_evaluates_and_reports(tmp_path):
    fams = [f for f in ("vae", "gan") if f in image_families()]
    stages: list[str] = []
    compare("digits", fams, budget="30s", samples=40, features=["classifier"], out=tmp_path / "cmp",
                  options={f: {**TINY[f], **FAST} for f in fams},
                  progress=lambda s, d, t: stages.append(s))
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert set(saved["runs"]) == set(fams) and saved["samples"] == 40
    for f in fams:
        r = saved["runs"][f]
        assert r["params"] > 0 and r["steps"] == 3 and r["train_seconds"] > 0
        img = r["images"]
        assert img["n_samples"] == 40 and img["samples_per_s"] > 0
        assert {"fid", "kid", "precision", "recall", "density", "coverage"} <= set(img["classifier"])
        assert 1.0 <= img["classes"]["inception_score"] <= 10.0
        assert len(img["memorization"]["closest"]) == 8
        assert "inception" not in img  # not asked for
    assert any(s.startswith("vae: ") for s in stages) and "report" in stages
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= len(fams) + 1 and 'class="best"' in page
    # existing runs join without retraining; a mismatched dataset is refused
    again = compare("digits", [], runs=[tmp_path / "cmp" / fams[0]], samples=20, features=["classifier"],
                    out=tmp_path / "cmp2")
    assert list(again["runs"]) == [fams[0]]
    with pytest.raises(ConfigError, match="trained on digits"):
        compare("mnist", [], runs=[tmp_path / "cmp" / fams[0]], out=tmp_path / "cmp3")


def test_eval_cli_adds_image_metrics_and_can_skip_them(tmp_path, capsys):
    run = tmp_path / "run"
    genlab.train("vae", "digits", out=run, **TINY["vae"], **FAST)
    with pytest.raises(SystemExit) as e:
        main(["eval", str(run), "--samples", "30", "--features", "classifier", "--max-examples", "20"])
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    assert "FID (classifier)" in out and "classes hit" in out
    saved = json.loads((run / "eval.json").read_text())
    assert saved["images"]["n_samples"] == 30 and "bits_per_dim" in saved
    res = genlab.evaluate(run, samples=0, max_examples=20)
    assert "images" not in res
    with pytest.raises(SystemExit) as e:
        main(["eval", str(run), "--samples", "30", "--features", "nope"])
    assert e.value.code == 2
    assert "unknown feature network" in capsys.readouterr().err


def test_compare_records_a_failing_family_and_goes_on(tmp_path, monkeypatch):
    from genlab.models.gan import GAN

    def broken(self, *a, **k):
        raise RuntimeError("sampler exploded")

    monkeypatch.setattr(GAN, "sample", broken)
    res = compare("digits", ["vae", "gan"], samples=20, features=["classifier"], out=tmp_path / "c",
                  options={f: {**TINY[f], **FAST} for f in ("vae", "gan")}, max_examples=10)
    assert list(res["runs"]) == ["vae"]
    assert "RuntimeError: sampler exploded" in res["errors"]["gan"]
    assert "sampler exploded" in (tmp_path / "c" / "report.html").read_text()
