"""Image metrics against closed forms and direct reference implementations (cf. torch-fidelity's parity tests)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from genlab.errors import CapabilityError, ConfigError
from genlab.metrics import images as M


def _reference_fid(mu1, s1, mu2, s2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm, eps offset when singular)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_closed_form_two_gaussians():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a, b = rng.uniform(0.5, 3, 6), rng.uniform(0.5, 3, 6)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T  # commuting covariances
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    # 1-d: (m1 - m2)² + (σ1 - σ2)²
    assert M.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-1.0]), np.array([[9.0]])) \
        == pytest.approx(4 + 1)


def test_fid_matches_scipy_sqrtm_reference_and_is_symmetric():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 32)) @ rng.normal(size=(32, 32))
    y = rng.normal(size=(250, 32)) @ rng.normal(size=(32, 32)) + 0.3
    s_x, s_y = M.gaussian_stats(x), M.gaussian_stats(y)
    ours = M.frechet_distance(*s_x, *s_y)
    assert ours == pytest.approx(_reference_fid(*s_x, *s_y), rel=1e-6)
    assert M.frechet_distance(*s_y, *s_x) == pytest.approx(ours, rel=1e-9)
    assert M.fid(x, y) == pytest.approx(ours, rel=1e-12)


def test_fid_near_zero_for_two_halves_of_one_gaussian():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40000, 4)) * [1, 2, 3, 0.5]
    assert abs(M.fid(x[:20000], x[20000:])) < 0.02  # sampling noise; the traces sum to 14.25
    assert M.fid(x[:100], x[:100]) == pytest.approx(0.0, abs=1e-8)


def test_fid_stable_with_singular_covariances():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 64))  # 20 samples in 64 dims: rank-19 covariances
    y = rng.normal(size=(20, 64)) + 0.1
    s_x, s_y = M.gaussian_stats(x), M.gaussian_stats(y)
    ours = M.frechet_distance(*s_x, *s_y)
    assert np.isfinite(ours) and ours > 0
    assert ours == pytest.approx(_reference_fid(*s_x, *s_y), rel=1e-4)
    assert M.frechet_distance(*s_x, *s_y, eps=1e-6) == pytest.approx(ours, rel=1e-4)
    assert M.fid(x, y) == pytest.approx(ours, rel=1e-8)  # the few-samples route (20·20·20 < 64³)
    with pytest.raises(ConfigError):
        M.frechet_distance(s_x[0], s_x[1], s_y[0][:3], s_y[1][:3, :3])


def _kid_direct(x, y):
    """O(n²) loops over pairs: the unbiased MMD² of Bińkowski et al. with k(a, b) = (a·b/d + 1)³."""
    m, d = len(x), x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_unbiased_estimator_matches_direct_implementation():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(25, 5)), rng.normal(size=(25, 5)) + 0.5
    mean, std = M.kid(x, y, subsets=3, subset_size=25)  # subsets of the full sets are the sets themselves
    assert mean == pytest.approx(_kid_direct(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)
    same = rng.normal(size=(2000, 5))
    m_same, s_same = M.kid(same[:1000], same[1000:], subsets=10, subset_size=200)
    assert abs(m_same) < 3 * s_same + 1e-3 and s_same > 0


def test_precision_recall_and_density_coverage():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 8))
    assert M.precision_recall(x, x) == (1.0, 1.0)
    assert M.density_coverage(x, x)[1] == 1.0
    assert M.density_coverage(x, x)[0] == pytest.approx(1.0, abs=0.2)
    far = rng.normal(size=(200, 8)) + 100
    assert M.precision_recall(x, far) == (0.0, 0.0)
    assert M.density_coverage(x, far) == (0.0, 0.0)
    collapsed = x[:1] + 0.01 * rng.normal(size=(200, 8))  # every sample near one real point
    p, r = M.precision_recall(x, collapsed)
    assert p == 1.0 and r < 0.05
    assert M.density_coverage(x, collapsed)[1] < 0.05


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


def test_feature_registry_checks_names_and_capabilities():
    with pytest.raises(ValueError):
        M.register_features("Bad Name")
    with pytest.raises(ConfigError, match="unknown feature network"):
        M.FEATURES["nope"]
    with pytest.raises(CapabilityError):
        M.feature_net("classifier", "some/folder")


def test_user_can_register_a_feature_network(tmp_path, monkeypatch, splits):
    class Pixels(M.FeatureNet):
        name, dims, fingerprint = "test-pixels", 64, "v1"

        def _features(self, x):
            return x.reshape(len(x), -1).float() / 255, None

    M.register_features("test-pixels")(lambda data, spec=None: Pixels())
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


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "c"))
    assert M.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GENLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert M.cache_dir() == tmp_path / "x" / "genlab"
