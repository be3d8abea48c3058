"""Image metrics: the Inception Score, class histograms, memorization, every metric of one sample set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.metrics import features as F
from genlab.metrics import images as M


def test_inception_score_limits():
    k = 10
    confident = torch.eye(k).repeat(20, 1)  # 200 one-hot predictions, every class equally often
    assert M.inception_score(confident, splits=1)[0] == pytest.approx(k, rel=1e-9)
    many = torch.eye(k).repeat(1000, 1)
    assert M.inception_score(many, splits=10)[0] == pytest.approx(k, rel=0.02)  # random splits of 1000
    by_class = torch.eye(k).repeat_interleave(1000, 0)  # sorted by class, like a test split
    assert M.inception_score(by_class, splits=10)[0] == pytest.approx(k, rel=0.02)
    constant = torch.zeros(50, k)
    constant[:, 3] = 1
    assert M.inception_score(constant)[0] == pytest.approx(1.0)
    assert M.inception_score(torch.full((50, k), 1 / k))[0] == pytest.approx(1.0)


def test_mode_coverage_and_class_accuracy():
    probs = torch.eye(4)[[0, 0, 0, 1]]
    mc = M.mode_coverage(probs)
    assert mc["classes_hit"] == 2 and mc["histogram"] == [3, 1, 0, 0]
    assert mc["entropy"] == pytest.approx(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))
    assert M.mode_coverage(torch.eye(4))["entropy_normalized"] == pytest.approx(1.0)
    assert M.class_accuracy(probs, torch.tensor([0, 1, 0, 1])) == 0.75


def test_memorization_flags_copies():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (50, 1, 6, 6), dtype=torch.uint8, generator=g)
    test = torch.randint(0, 256, (20, 1, 6, 6), dtype=torch.uint8, generator=g)
    copies = M.memorization(train[:10], train, test)
    assert copies["near_copy_share"] == 1.0 and copies["nn_train_mean"] == 0.0
    assert copies["closest"][0]["distance"] == 0.0 and copies["closest"][0]["train"] == copies["closest"][0]["sample"]
    fresh = torch.randint(0, 256, (10, 1, 6, 6), dtype=torch.uint8, generator=g)
    novel = M.memorization(fresh, train, test)
    assert novel["near_copy_share"] == 0.0 and 0.5 < novel["train_test_ratio"] < 1.5


def test_user_can_register_a_feature_network(tmp_path, monkeypatch, splits):
    class Pixels(F.FeatureNet):
        name, dims, fingerprint = "test-pixels", 64, "v1"

        def _features(self, x):
            return x.reshape(len(x), -1).float() / 255, None

    F.register_features("test-pixels")(lambda data, spec=None: Pixels())
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    train, test = splits["image"]
    res = M.sample_metrics(test.x, data="digits", train=train, test=test, features=["test-pixels"],
                           kid_subsets=5, kid_subset_size=100)
    assert set(res["test-pixels"]) >= {"fid", "kid", "kid_std", "precision", "recall", "density", "coverage"}
    assert res["test-pixels"]["precision"] == 1.0 and res["test-pixels"]["recall"] == 1.0
    assert res["test-pixels"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert res["memorization"]["near_copy_share"] < 0.1  # test images are not copies of training images
    assert len(list((tmp_path / "features").glob("test-pixels-v1-*.safetensors"))) == 1
    assert res["test-pixels"]["kid_subset_size"] == 100 and res["test-pixels"]["kid_std"] > 0
    again = M.sample_metrics(test.x, data="digits", train=train, test=test, features=["test-pixels"],
                             kid_subsets=5)
    assert again["test-pixels"]["fid"] == res["test-pixels"]["fid"]
    # the default subset size (1000) is capped at half the smaller set, so subsets differ and the std is real
    assert again["test-pixels"]["kid_subset_size"] == len(test) // 2 and again["test-pixels"]["kid_std"] > 0
