"""Image-specific sample metrics: Inception Score, class histograms and accuracy, memorization, and every image
metric of one set of samples (:func:`sample_metrics`) on the feature networks of :mod:`genlab.metrics.features`
with the distribution metrics of :mod:`genlab.metrics.distribution`.

On class predictions: Inception Score, accuracy of conditional samples, mode coverage. In pixel space:
memorization (nearest training vs. nearest test image, share of near-copies, closest pairs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.metrics import features as _features
from genlab.metrics.distribution import as_array, density_coverage, fid, kid, precision_recall
from genlab.metrics.features import FEATURES, Progress, _no_progress, feature_net, reference_features


def inception_score(probs: Tensor | np.ndarray, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) ‖ p(y)))``, mean and std over ``splits`` equal parts.

    The rows are shuffled (seeded) before splitting, so data sorted by class (e.g. a test split) is not scored
    per class.

    Returns:
        (mean, std) (Salimans et al., 2016, "Improved Techniques for Training GANs", arXiv:1606.03498).
    """
    p = as_array(probs)
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
    p = as_array(probs)
    k = p.shape[1]
    hist = np.bincount(p.argmax(1), minlength=k)
    share = hist / hist.sum()
    nz = share[share > 0]
    ent = float(-(nz * np.log(nz)).sum())
    return {"classes_hit": int((share > min_share).sum()), "num_classes": k, "entropy": ent,
            "entropy_normalized": ent / math.log(k) if k > 1 else 1.0, "histogram": hist.tolist()}


def class_accuracy(probs: Tensor | np.ndarray, requested: Tensor | np.ndarray) -> float:
    """Share of conditional samples the classifier assigns to the label they were drawn for."""
    return float((as_array(probs).argmax(1) == np.asarray(requested).reshape(-1)).mean())


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


def sample_metrics(samples: Tensor, *, data: str, train: Any, test: Any, requested: Tensor | None = None,
                   features: Sequence[str] | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
                   pr_k: int = 3, dc_k: int = 5, progress: Progress = _no_progress) -> dict[str, Any]:
    """Every sample-based image metric of ``samples`` against the test split (features) and both splits (copies).

    Arguments:
        samples: generated ``uint8`` images ``(N, C, H, W)``.
        data: dataset name (picks the shipped classifier).
        train, test: the run's splits (:class:`~genlab.data.ArrayDataset`).
        requested: the labels conditional samples were drawn for (class accuracy), or None.
        features: feature networks to use (default: every one of ``features.DEFAULT_FEATURES`` that can serve
            ``data``); unknown names fail.
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
    names, notes = _features.available_features(data, test.spec, features)
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
