"""Vector data: 2-D toy densities for flows (``moons``, ``rings``) as ``float32`` arrays of shape ``(N, D)``.

Representation: examples are real vectors; ``sample()`` returns ``float32 (n, D)`` and ``log_prob()`` the continuous
log-density in nats of the data *as the model sees it* (after ``--standardize`` when that is on, so with it the
density is of the standardized data). Built-ins are unlabelled and generated with a fixed seed, no download:

* ``moons`` — scikit-learn ``make_moons(n_samples=6000, noise=0.05, random_state=0)`` (raw coordinates, roughly
  x ∈ [-1.2, 2.2], y ∈ [-0.7, 1.2]): first 5,000 train, last 1,000 test.
* ``rings`` — three concentric rings of radii 0.75, 1.5 and 2.25 (points per ring ∝ radius, angle uniform, radial
  Gaussian noise σ = 0.05), ``numpy.random.default_rng(0)``, shuffled: first 5,000 train, last 1,000 test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genlab.config import check
from genlab.core import DATASETS, DataSpec, register_dataset
from genlab.data import MODALITIES, ArrayDataset, Modality
from genlab.errors import DataError

N_TRAIN, N_TEST = 5000, 1000


def vector_dataset(name: str) -> Callable[[Callable[[], np.ndarray]], Callable[[], np.ndarray]]:
    """Decorator: register a built-in vector dataset (a function returning ``float (N, D)``) as kind ``vector``."""

    def deco(fn: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
        fn.data_kind = "vector"  # type: ignore[attr-defined]
        return register_dataset(name)(fn)

    return deco


@vector_dataset("moons")
def moons() -> np.ndarray:
    """Two interleaving half-moons (scikit-learn make_moons, noise 0.05, seed 0); 5,000 train / 1,000 test, 2-D."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=N_TRAIN + N_TEST, noise=0.05, random_state=0)
    return x


@vector_dataset("rings")
def rings() -> np.ndarray:
    """Three concentric rings (radii 0.75/1.5/2.25, radial noise 0.05, seed 0); 5,000 train / 1,000 test, 2-D."""
    rng = np.random.default_rng(0)
    radii = np.array([0.75, 1.5, 2.25])
    n = N_TRAIN + N_TEST
    which = rng.choice(len(radii), size=n, p=radii / radii.sum())
    theta = rng.uniform(0, 2 * np.pi, size=n)
    r = radii[which] + 0.05 * rng.standard_normal(n)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


@dataclass(frozen=True)
class VectorDataConfig:
    """How to load vector data.

    Arguments:
        data: a built-in vector dataset (``moons``, ``rings``; `genlab datasets` lists them).
        standardize: shift and scale every dimension to zero mean and unit variance on the training split (the
            reported log-density is then of the standardized data).
        max_examples: use at most this many training examples (None = all).
    """

    data: str = "moons"
    standardize: bool = False
    max_examples: int | None = None

    def __post_init__(self) -> None:
        check(self.max_examples is None or self.max_examples > 0, "--max-examples must be positive")


def load_vectors(cfg: VectorDataConfig) -> tuple[ArrayDataset, ArrayDataset, dict[str, Any]]:
    """Load a built-in vector dataset with its fixed split.

    Returns:
        (train, test, preprocessing), preprocessing being the JSON-able record stored in each run's config.

    Raises:
        DataError: for a name that is not a built-in vector dataset.
    """
    if cfg.data not in DATASETS or getattr(DATASETS[cfg.data], "data_kind", "image") != "vector":
        names = [n for n, fn in DATASETS.items() if getattr(fn, "data_kind", "image") == "vector"]
        raise DataError(f"'{cfg.data}' is not a vector dataset; choose one of: {', '.join(names)}")
    x = np.asarray(DATASETS[cfg.data](), dtype=np.float64)
    train, test = x[:N_TRAIN], x[N_TRAIN:]
    prep: dict[str, Any] = {"source": cfg.data, "n_train": len(train), "n_test": len(test), "standardized": False}
    if cfg.standardize:
        mean, std = train.mean(0), train.std(0) + 1e-12
        train, test = (train - mean) / std, (test - mean) / std
        prep.update(standardized=True, mean=mean.tolist(), std=std.tolist())
    if cfg.max_examples is not None:
        train = train[: cfg.max_examples]
        prep["n_train"] = len(train)
    spec = DataSpec(kind="vector", shape=(int(x.shape[1]),))
    return (ArrayDataset(torch.from_numpy(train.astype(np.float32)), None, spec),
            ArrayDataset(torch.from_numpy(test.astype(np.float32)), None, spec), prep)


MODALITIES["vector"] = Modality(VectorDataConfig, load_vectors)
