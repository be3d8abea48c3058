"""Two-sample statistics for drift monitoring: a served window of samples against a reference set.

Each statistic is a distance (0 = alike, larger = further) tested one-sided against thresholds from a bootstrap
null (:mod:`genlab.serve.drift`). Bootstrap windows repeat draws, so the kernel statistic takes the *origin* of
each window row (rows with the same origin are one draw) and never pairs a draw with its own copy — otherwise the
within-window term of the U-statistic would be inflated by copies, and the thresholds with it.
"""

from __future__ import annotations

import numpy as np

from genlab.errors import ConfigError


def poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's cubic polynomial kernel ``k(x, y) = (xᵀy / D + 1)³`` → ``(len(a), len(b))``."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2(x: np.ndarray, y: np.ndarray, y_origin: np.ndarray | None = None) -> float:
    """Unbiased MMD² between feature sets ``x (N, D)`` and ``y (M, D)`` with KID's cubic kernel.

    ``MMD²ᵤ = Σ_{i≠j} k(xᵢ,xⱼ)/(N(N−1)) + Σ_{(i,j)∈P} k(yᵢ,yⱼ)/|P| − 2 Σ_{i,j} k(xᵢ,yⱼ)/(NM)`` where ``P`` holds the
    pairs ``i ≠ j`` of ``y`` from different draws (``y_origin[i] ≠ y_origin[j]``; all ``i ≠ j`` without origins).
    On the full sets this is the KID of Bińkowski et al. (2018, arXiv:1801.01401) without subsets.

    Raises:
        ConfigError: for fewer than 2 rows or distinct draws in a set.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ConfigError("MMD needs at least 2 reference and 2 window samples")
    kxx, kyy, kxy = poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y)
    xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    if y_origin is None:
        yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    else:
        o = np.asarray(y_origin)
        other = o[:, None] != o[None, :]
        pairs = int(other.sum())
        if pairs == 0:
            raise ConfigError("MMD needs at least 2 distinct draws in the window")
        yy = float((kyy * other).sum()) / pairs
    return float(xx + yy - 2.0 * kxy.mean())


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic ``sup_t |F_a(t) − F_b(t)|`` of two 1-D samples."""
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    if len(a) == 0 or len(b) == 0:
        raise ConfigError("the KS distance needs non-empty samples")
    t = np.concatenate([a, b])
    fa = np.searchsorted(a, t, side="right") / len(a)
    fb = np.searchsorted(b, t, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def histogram_tv(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Total-variation distance ``½ Σ_k |p_k − q_k|`` between the histograms of integer labels ``a`` and ``b`` in
    ``0..bins−1``."""
    pa = np.bincount(np.asarray(a, dtype=np.int64), minlength=bins) / max(len(a), 1)
    pb = np.bincount(np.asarray(b, dtype=np.int64), minlength=bins) / max(len(b), 1)
    return float(0.5 * np.abs(pa - pb).sum())


def mean_shift(a: np.ndarray, b: np.ndarray) -> float:
    """``|mean(a) − mean(b)|`` of two 1-D samples."""
    return float(abs(np.mean(np.asarray(a, dtype=np.float64)) - np.mean(np.asarray(b, dtype=np.float64))))


def standardize(reference: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Features scaled by the reference's per-column mean and std (constant columns are only centred)."""
    ref = np.asarray(reference, dtype=np.float64)
    mu, sd = ref.mean(0), ref.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return [(np.asarray(a, dtype=np.float64) - mu) / sd for a in (ref, *others)]
