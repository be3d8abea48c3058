"""Distribution metrics against closed forms and reference implementations (cf. torch-fidelity's parity tests):
FID against scipy's ``sqrtm`` (pytorch-fid's formula), KID against the direct O(n²) estimator, precision/recall and
density/coverage against the authors' ``prdc`` package (Naeem et al., 2020)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from genlab.errors import ConfigError
from genlab.metrics import distribution as M


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


@pytest.mark.parametrize(("n", "m", "d", "k", "shift"), [(200, 200, 8, 3, 0.0), (300, 150, 16, 5, 0.4),
                                                         (120, 260, 4, 2, 1.5), (500, 500, 32, 5, 0.2)])
def test_precision_recall_density_coverage_match_the_prdc_reference(n, m, d, k, shift):
    prdc = pytest.importorskip("prdc", reason="the reference implementation (pip install prdc) is a dev dependency")
    rng = np.random.default_rng(n + m + d)
    real = rng.normal(size=(n, d)).astype(np.float32)
    fake = (rng.normal(size=(m, d)) * rng.uniform(0.6, 1.4, d) + shift).astype(np.float32)
    ref = prdc.compute_prdc(real, fake, nearest_k=k)
    p, r = M.precision_recall(real, fake, k)
    dens, cov = M.density_coverage(real, fake, k)
    # float32 distances: a point on a ball's boundary may fall either way, at most one per set
    assert p == pytest.approx(ref["precision"], abs=1.01 / m)
    assert r == pytest.approx(ref["recall"], abs=1.01 / n)
    assert dens == pytest.approx(ref["density"], abs=1.01 / (k * m) * 2)
    assert cov == pytest.approx(ref["coverage"], abs=1.01 / n)
    assert 0 < p < 1 or shift == 0.0
