"""Distribution metrics on any feature arrays: FID, KID, precision/recall and density/coverage.

They compare a set of real and a set of generated feature vectors ``(N, D)`` and know nothing of where the features
come from (Inception or classifier features of images, ChemNet activations of molecules, raw table columns, …).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from genlab.errors import ConfigError


def as_array(a: Tensor | np.ndarray) -> np.ndarray:
    """Features as a float64 numpy array."""
    return a.double().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a, dtype=np.float64)


def gaussian_stats(feats: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features ``(N, D)``."""
    f = as_array(feats)
    return f.mean(0), np.cov(f, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 0.0) -> float:
    """Fréchet distance between two Gaussians.

    ``d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)``, where ``tr (Σ₁ Σ₂)^½ = tr (Σ₁^½ Σ₂ Σ₁^½)^½`` is the sum of the
    singular values of ``Σ₁^½ Σ₂^½`` (symmetric PSD square roots by eigendecomposition): real, finite and accurate
    for singular covariances, where ``sqrtm`` of the non-symmetric product is not.

    Arguments:
        mu1, sigma1: mean ``(D,)`` and covariance ``(D, D)`` of the first set.
        mu2, sigma2: of the second set.
        eps: added to both diagonals first (as pytorch-fid does when ``sqrtm`` fails); 0 = off.

    Returns:
        FID (Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update Rule…", arXiv:1706.08500).
    """
    mu1, mu2, s1, s2 = (np.asarray(a, dtype=np.float64) for a in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ConfigError(f"feature sizes differ ({mu1.shape} vs {mu2.shape}); use the same feature network")
    if eps:
        s1 = s1 + eps * np.eye(len(s1))
        s2 = s2 + eps * np.eye(len(s2))
    tr_sqrt = float(np.linalg.svd(_psd_sqrt(s1) @ _psd_sqrt(s2), compute_uv=False).sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def fid(real: Tensor | np.ndarray, fake: Tensor | np.ndarray) -> float:
    """FID between two feature sets ``(N, D)`` and ``(M, D)`` (arXiv:1706.08500).

    With few samples in many dimensions (``N·M·min(N, M) < D³``) the trace term is computed from the samples:
    with ``Σ₁ = A₁ᵀA₁`` and ``Σ₂ = A₂ᵀA₂`` (centred features / √(n−1)), ``tr (Σ₁ Σ₂)^½`` is the sum of the singular
    values of ``A₁ A₂ᵀ`` (N × M), which avoids two D × D eigendecompositions; the result is the same.
    """
    x, y = as_array(real), as_array(fake)
    (n, d), m = x.shape, len(y)
    if n < 2 or m < 2:
        raise ConfigError("FID needs at least 2 real and 2 generated samples")
    if n * m * min(n, m) >= d**3:
        return frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    a = (x - x.mean(0)) / math.sqrt(n - 1)
    b = (y - y.mean(0)) / math.sqrt(m - 1)
    tr_sqrt = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    return float(((x.mean(0) - y.mean(0)) ** 2).sum() + (a**2).sum() + (b**2).sum() - 2 * tr_sqrt)


def kid(real: Tensor | np.ndarray, fake: Tensor | np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD² with the cubic polynomial kernel, mean and std over subsets.

    ``k(x, y) = (xᵀy / D + 1)³``; per subset of ``m`` real and ``m`` fake features
    ``MMD²ᵤ = Σ_{i≠j} k(xᵢ,xⱼ)/(m(m−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(m(m−1)) − 2 Σ_{i,j} k(xᵢ,yⱼ)/m²``.

    Arguments:
        real, fake: features ``(N, D)``, ``(M, D)``.
        subsets: number of random subsets.
        subset_size: ``m``, capped at ``min(N, M)``.
        seed: seed of the subset draws.

    Returns:
        (mean, std) over subsets (Bińkowski et al., 2018, "Demystifying MMD GANs", arXiv:1801.01401).
    """
    x, y = as_array(real), as_array(fake)
    d = x.shape[1]
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ConfigError("KID needs at least 2 real and 2 generated samples")
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    for s in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        vals[s] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                   - 2 * kxy.mean())
    return float(vals.mean()), float(vals.std())


def _pairwise(a: Tensor, b: Tensor, chunk: int = 2048) -> Tensor:
    """Euclidean distances ``(len(a), len(b))`` in float32, in row chunks."""
    return torch.cat([torch.cdist(a[i : i + chunk], b) for i in range(0, len(a), chunk)])


def _knn_radius(f: Tensor, k: int) -> Tensor:
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    d = _pairwise(f, f)
    return d.kthvalue(k + 1, dim=1).values


def precision_recall(real: Tensor | np.ndarray, fake: Tensor | np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall with k-NN manifolds.

    Precision: share of generated samples inside some real sample's ball of radius = its k-NN distance among the
    real samples; recall: share of real samples inside some generated sample's k-NN ball among the generated ones.

    Returns:
        (precision, recall) (Kynkäänniemi et al., 2019, arXiv:1904.06991).
    """
    x, y = torch.as_tensor(as_array(real), dtype=torch.float32), torch.as_tensor(as_array(fake), dtype=torch.float32)
    k = min(k, len(x) - 1, len(y) - 1)
    if k < 1:
        raise ConfigError("precision/recall need at least 2 real and 2 generated samples")
    rx, ry = _knn_radius(x, k), _knn_radius(y, k)
    d = _pairwise(y, x)  # (M, N): generated × real
    precision = (d <= rx[None, :]).any(1).double().mean()
    recall = (d <= ry[:, None]).any(0).double().mean()
    return float(precision), float(recall)


def density_coverage(real: Tensor | np.ndarray, fake: Tensor | np.ndarray, k: int = 5) -> tuple[float, float]:
    """Density and coverage.

    ``density = 1/(kM) Σⱼ Σᵢ 1[Yⱼ ∈ B(Xᵢ, NNDₖ(Xᵢ))]``, ``coverage = 1/N Σᵢ 1[∃ j: Yⱼ ∈ B(Xᵢ, NNDₖ(Xᵢ))]``.

    Returns:
        (density, coverage) (Naeem et al., 2020, "Reliable Fidelity and Diversity Metrics…", arXiv:2002.09797).
    """
    x, y = torch.as_tensor(as_array(real), dtype=torch.float32), torch.as_tensor(as_array(fake), dtype=torch.float32)
    k = min(k, len(x) - 1)
    if k < 1 or len(y) < 1:
        raise ConfigError("density/coverage need at least 2 real and 1 generated sample")
    rx = _knn_radius(x, k)
    inside = _pairwise(y, x) <= rx[None, :]  # (M, N)
    return float(inside.double().sum() / (k * len(y))), float(inside.any(0).double().mean())


