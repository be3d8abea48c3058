"""Augmentation: the experiment's shape, that the fixed classifiers learn, the CLI and bad inputs."""

from __future__ import annotations

import json

import pytest
import torch

from genlab.apps.augment import CLASSIFIERS, augment, default_classifier, synthetic
from genlab.errors import CapabilityError
from tests.test_cli import assert_one_line_error, run_cli


def test_synthetic_examples_are_class_balanced(tiny_runs):
    x, y = synthetic(tiny_runs["cvae"], 25, chunk=10)
    assert x.shape == (25, 1, 8, 8) and x.dtype == torch.uint8
    assert torch.equal(y, torch.arange(25) % 10)


def test_default_classifier_follows_the_form(tiny_runs):
    assert default_classifier(tiny_runs["cvae"].spec) == "cnn"
    assert set(CLASSIFIERS) >= {"cnn", "boosting"}


def test_boosting_learns_from_real_labels_and_report_has_every_size(tiny_runs):
    res = augment(tiny_runs["cvae"], labels=100, synthetic_sizes=(20, 40), classifier="boosting", classifier_steps=30)
    assert res["real_only"] > 0.5  # 100 real labels of 8x8 digits: far above chance (0.1)
    assert set(res["with_synthetic"]) == {20, 40} and all(0 <= a <= 1 for a in res["with_synthetic"].values())
    assert res["n_test"] == 364 and res["labels"] == 100


def test_unconditional_runs_cannot_augment(tiny_runs):
    with pytest.raises(CapabilityError, match="unconditional"):
        augment(tiny_runs["vae"], labels=20, synthetic_sizes=(10,))


def test_cli_augment(tiny_runs, tmp_path, capsys):
    code, out, err = run_cli(["augment", tiny_runs["ssvae"].path, "--labels", "20", "--synthetic", "20",
                              "--classifier-steps", "5", "--out", tmp_path / "aug.json"], capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "aug.json").read_text())
    assert res["classifier"] == "cnn" and set(res["with_synthetic"]) == {"20"} and "20 real + 20 synthetic" in out


@pytest.mark.parametrize("case", ["too-many", "unconditional", "classifier", "sizes"])
def test_cli_bad_inputs(case, tiny_runs, tmp_path, capsys):
    run, extra, needle = {
        "too-many": ("cvae", ["--labels", "99999"], "more than the 1433"),
        "unconditional": ("vae", [], "unconditional"),
        "classifier": ("cvae", ["--classifier", "forest"], "unknown classifier 'forest'"),
        "sizes": ("cvae", ["--synthetic", "1k"], "--synthetic"),
    }[case]
    code, _, err = run_cli(["augment", tiny_runs[run].path, *extra, "--out", tmp_path / "a.json"], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "a.json").exists()
