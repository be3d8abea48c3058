"""Memorization: does a model reproduce its training data?

* **Tiled pixel distance** (Carlini et al. 2023): images are cut into a ``t × t`` grid of tiles and two images are
  as far apart as their most different tile (RMS pixel difference in [0, 1]), so a copy must match everywhere.
* **Relative distance** (Carlini et al.'s CIFAR criterion): the distance to the nearest training image divided by
  the mean distance to the ``k`` nearest; a copy is far nearer one training image than to the rest (ratio → 0),
  while a typical digit "1" is close to hundreds of training "1"s (ratio near 1). A sample is *flagged* when the
  ratio is below ``threshold``; the same score on held-out real images is reported as the false-flag baseline.
* **Feature space**: the same relative criterion on a feature network's embeddings (where one serves the data).
* **Extraction attack** (Carlini et al.'s generate-and-cluster): among many generations, a dense clique (≥
  ``clique`` samples all within the copy distance of each other) marks an image the model keeps regenerating;
  it is *extracted* when its medoid is flagged against the training set.
* **Text**: share of generated token n-grams found verbatim in the training stream (rolling hashes).

References:
    Carlini et al., "Extracting Training Data from Diffusion Models", 2023, arXiv:2301.13188 (Sec. 4-5).
    Somepalli et al., "Diffusion Art or Digital Forgery?", 2023, arXiv:2212.03860.
    Carlini et al., "Extracting Training Data from Large Language Models", 2021, arXiv:2012.07805.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.errors import ConfigError, DataError


def _tiles(x: Tensor, tiles: int) -> Tensor:
    """``(N, C, H, W)`` images in [0, 1] → ``(tiles², N, C·h·w)`` tile vectors (edges dropped to fit)."""
    n, c, h, w = x.shape
    th, tw = h // tiles, w // tiles
    if th == 0 or tw == 0:
        raise ConfigError(f"cannot cut {h}x{w} images into {tiles}x{tiles} tiles")
    x = x[:, :, : th * tiles, : tw * tiles].reshape(n, c, tiles, th, tiles, tw)
    return x.permute(2, 4, 0, 1, 3, 5).reshape(tiles * tiles, n, c * th * tw)


def tiled_distances(a: Tensor, b: Tensor, tiles: int = 4, chunk: int = 256) -> Tensor:
    """``(len(a), len(b))`` tiled distances of ``uint8`` images: the maximum over tiles of the RMS difference."""
    ta = _tiles(a.double() / 255, tiles)
    tb = _tiles(b.double() / 255, tiles)
    dim = ta.shape[-1]
    out = []
    for lo in range(0, a.shape[0], chunk):
        d = torch.cdist(ta[:, lo : lo + chunk], tb, compute_mode="donot_use_mm_for_euclid_dist")  # (T, c, Nb)
        out.append(d.amax(0) / dim**0.5)
    return torch.cat(out)


def relative_nn(d: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """From distances ``(N, M)``: nearest distance, its index and nearest / mean of the ``k`` nearest."""
    k = max(1, min(k, d.shape[1]))
    near, idx = d.topk(k, dim=1, largest=False)
    return near[:, 0], idx[:, 0], near[:, 0] / near.mean(1).clamp_min(1e-12)


def copy_flags(samples: Tensor, train: Tensor, *, tiles: int = 4, k: int = 50,
               threshold: float = 1 / 3) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per sample: the tiled distance to the nearest training image, its index, the relative distance and whether
    it is flagged as a copy (relative distance below ``threshold``; Carlini et al. 2023, arXiv:2301.13188)."""
    d1, idx, rel = relative_nn(tiled_distances(samples, train, tiles), k)
    return d1, idx, rel, rel < threshold


def copy_scores(samples: Tensor, train: Tensor, test: Tensor | None = None, *, tiles: int = 4, k: int = 50,
                threshold: float = 1 / 3, features: tuple[Tensor, Tensor, Tensor | None] | None = None,
                top: int = 8) -> dict[str, Any]:
    """Flag samples that copy a training image (tiled pixel distance, relative criterion; optionally features).

    Arguments:
        samples, train, test: ``uint8`` images ``(N, C, H, W)``; ``test`` (held-out real images) gives the
            false-flag baseline.
        tiles: tiles per side.
        k: neighbours in the relative criterion.
        threshold: flagged when nearest / mean-of-k-nearest is below this.
        features: optional ``(sample, train, test)`` feature vectors for the feature-space criterion.
        top: how many flagged (or closest) pairs to list.

    Returns:
        the flagged share, the baseline share on test images, and the ``top`` pairs (sample, nearest training
        image, tiled distance, relative distance), most copy-like first.
    """
    d1, idx, rel, flagged = copy_flags(samples, train, tiles=tiles, k=k, threshold=threshold)
    out: dict[str, Any] = {"n_samples": len(samples), "tiles": tiles, "k": k, "threshold": threshold,
                           "flagged": int(flagged.sum()), "flagged_share": float(flagged.double().mean()),
                           "nn_tiled_median": float(d1.median()), "relative_median": float(rel.median())}
    if test is not None:
        _, _, rel_t = relative_nn(tiled_distances(test, train, tiles), k)
        out["test_flagged_share"] = float((rel_t < threshold).double().mean())
        out["test_relative_median"] = float(rel_t.median())
    if features is not None:
        fs, ft, fh = (None if f is None else torch.as_tensor(f, dtype=torch.float64) for f in features)
        assert fs is not None and ft is not None
        _, _, frel = relative_nn(torch.cdist(fs, ft), k)
        out["feature_flagged_share"] = float((frel < threshold).double().mean())
        out["feature_relative_median"] = float(frel.median())
        if fh is not None:
            _, _, frel_t = relative_nn(torch.cdist(fh, ft), k)
            out["feature_test_flagged_share"] = float((frel_t < threshold).double().mean())
    order = torch.argsort(rel)[:top]
    out["pairs"] = [{"sample": int(i), "train": int(idx[i]), "distance": float(d1[i]), "relative": float(rel[i]),
                     "flagged": bool(flagged[i])} for i in order]
    return out


def _cliques(near: Tensor, size: int) -> list[list[int]]:
    """Greedy cliques of at least ``size`` nodes in a boolean adjacency matrix, largest neighbourhoods first."""
    adj = near.clone()
    adj.fill_diagonal_(False)
    free = torch.ones(len(adj), dtype=torch.bool)
    found = []
    for node in torch.argsort(adj.sum(1), descending=True).tolist():
        if not free[node] or int((adj[node] & free).sum()) + 1 < size:
            continue
        clique = [node]
        for other in torch.nonzero(adj[node] & free).flatten().tolist():
            if all(bool(adj[other, c]) for c in clique):
                clique.append(other)
        if len(clique) >= size:
            found.append(clique)
            free[clique] = False
    return found


def training_spacing(train: Tensor, tiles: int = 4, limit: int = 2000) -> float:
    """Median tiled distance from a training image to its nearest *other* training image (the first ``limit``
    images against all of them; exact duplicates count as distance 0)."""
    if len(train) < 2:
        raise DataError("the extraction attack needs at least two training images to set its distance scale")
    sub = train[:limit]
    d = tiled_distances(sub, train, tiles)
    d[torch.arange(len(sub)), torch.arange(len(sub))] = math.inf
    return float(d.min(1).values.median())


def extraction_attack(samples: Tensor, train: Tensor, *, tiles: int = 4, k: int = 50, threshold: float = 1 / 3,
                      clique: int = 10, same: float | None = None) -> dict[str, Any]:
    """Carlini et al.'s generate-many-and-cluster attack on ``uint8`` generations.

    Arguments:
        samples: many generations ``(N, C, H, W)``.
        train: the training images.
        clique: generations that must all be near-identical to mark an image the model regenerates.
        same: tiled distance under which two generations count as the same image (default: half the median
            tiled distance from a training image to its nearest other training image, a property of the data:
            such generations are closer to each other than distinct training images are; a default taken from
            the generations themselves would shrink as the model copies more exactly and split its copies).

    Returns:
        the clusters found (size, medoid, its nearest training image, relative distance, extracted or not) and how
        many training images were extracted.
    """
    d_gen = tiled_distances(samples, samples, tiles)
    d1, idx, rel = relative_nn(tiled_distances(samples, train, tiles), k)
    cut = same if same is not None else 0.5 * training_spacing(train, tiles)
    groups = _cliques(d_gen < cut, clique)
    clusters = []
    for members in groups:
        sub = d_gen[members][:, members]
        medoid = members[int(sub.sum(1).argmin())]
        clusters.append({"size": len(members), "medoid": medoid, "train": int(idx[medoid]),
                         "distance": float(d1[medoid]), "relative": float(rel[medoid]),
                         "extracted": bool(rel[medoid] < threshold)})
    extracted = {c["train"] for c in clusters if c["extracted"]}
    return {"n_generated": len(samples), "clique": clique, "same_distance": cut, "clusters": clusters,
            "n_clusters": len(clusters), "n_extracted": len(extracted)}


def _ngram_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """Polynomial rolling hashes (mod 2⁶⁴) of every ``n``-gram of a token array."""
    t = np.asarray(tokens, dtype=np.uint64)
    if len(t) < n:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(len(t) - n + 1, dtype=np.uint64)
    base = np.uint64(1_000_003)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * base + t[j : len(t) - n + 1 + j] + np.uint64(1)
    return h


def verbatim_ngrams(samples: list[list[int]], train_tokens: np.ndarray, n: int = 16) -> dict[str, Any]:
    """Share of generated token ``n``-grams found verbatim in the training stream, and of samples with any.

    References:
        Carlini et al., 2021, arXiv:2012.07805 (verbatim extraction).
    """
    known = np.unique(_ngram_hashes(train_tokens, n))
    per = []
    for s in samples:
        h = _ngram_hashes(np.asarray(s), n)
        per.append(float(np.isin(h, known).mean()) if len(h) else 0.0)
    return {"n": n, "n_samples": len(samples), "ngram_share": float(np.mean(per)) if per else 0.0,
            "samples_with_copy": float(np.mean([p > 0 for p in per])) if per else 0.0,
            "max_share": float(max(per, default=0.0))}
