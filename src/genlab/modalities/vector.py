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

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genlab.checkpoint import write_bytes
from genlab.config import check
from genlab.core import DATASETS, DataSpec, datasets_of, register_dataset
from genlab.data import ArrayDataset
from genlab.errors import DataError
from genlab.modalities.base import Column, Evaluation, Modality, Progress, Splits, likelihood_rows, register_modality

if TYPE_CHECKING:
    from genlab.run import Run

N_TRAIN, N_TEST = 5000, 1000


@register_dataset("moons", kind="vector")
def moons() -> np.ndarray:
    """Two interleaving half-moons (scikit-learn make_moons, noise 0.05, seed 0); 5,000 train / 1,000 test, 2-D."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=N_TRAIN + N_TEST, noise=0.05, random_state=0)
    return x


@register_dataset("rings", kind="vector")
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


def load_vectors(cfg: VectorDataConfig) -> Splits:
    """Load a built-in vector dataset with its fixed split.

    Returns:
        the splits, with the JSON-able preprocessing record stored in each run's config.

    Raises:
        DataError: for a name that is not a built-in vector dataset.
    """
    if cfg.data not in DATASETS or DATASETS[cfg.data].kind != "vector":
        raise DataError(f"'{cfg.data}' is not a vector dataset; choose one of: {', '.join(datasets_of('vector'))}")
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
    spec = DataSpec(kind="vector", shape=(int(x.shape[1]),), form="vector")
    return Splits(ArrayDataset(torch.from_numpy(train.astype(np.float32)), None, spec),
                  ArrayDataset(torch.from_numpy(test.astype(np.float32)), None, spec), prep)


@dataclass(frozen=True)
class VectorEvalOptions:
    """Options of ``genlab eval`` on vector runs.

    Arguments:
        samples: samples drawn and compared with the test split on the raw coordinates (0 = likelihood only).
    """

    samples: int = 1000

    def __post_init__(self) -> None:
        check(self.samples == 0 or self.samples >= 2, f"--samples must be 0 (skip) or at least 2, got {self.samples}")


@register_modality("vector")
class VectorModality(Modality):
    """Real vectors ``float32 (N, D)``; samples are drawn as a scatter density or saved as ``.npz``."""

    config_cls = VectorDataConfig
    forms = ("vector",)
    sample_formats = ("png", "npz")
    eval_options_cls = VectorEvalOptions
    eval_keys = ("likelihood", "samples")

    def load(self, cfg: Any, form: str) -> Splits:
        return load_vectors(cfg)

    def write_samples(self, run: Run, samples: torch.Tensor, path: Path, fmt: str,
                      labels: torch.Tensor | None = None, options: Mapping[str, Any] | None = None) -> Path:
        if fmt == "npz":
            buf = io.BytesIO()
            np.savez(buf, x=samples.numpy())
            write_bytes(path, buf.getvalue())
            return path
        write_bytes(path, self.render(run, samples)[1])
        return path

    def render(self, run: Run, samples: torch.Tensor) -> tuple[str, bytes]:
        from PIL import Image

        from genlab.report.grids import scatter

        buf = io.BytesIO()
        Image.fromarray(scatter(samples)).save(buf, format="PNG")
        return "image/png", buf.getvalue()

    def sample_metrics(self, run: Run, splits: Splits, options: Any, evaluation: Evaluation, *, seed: int,
                       progress: Progress) -> None:
        """FID, KID, precision/recall and density/coverage of samples vs the test split on the raw coordinates."""
        from genlab.metrics.distribution import density_coverage, fid, kid, precision_recall

        if not options.samples:
            return
        g = torch.Generator(device=run.model.device).manual_seed(seed)
        progress("sampling", 0, options.samples)
        with torch.no_grad():
            x = run.model.sample(options.samples, generator=g).cpu().double()
        progress("sampling", options.samples, options.samples)
        real = splits.test.x.double()
        ok = torch.isfinite(x).all(1)
        m = min(len(real), int(ok.sum()))
        res: dict[str, Any] = {"n_samples": len(x), "finite_share": float(ok.double().mean())}
        if m >= 2:
            xs = x[ok]
            k_mean, k_std = kid(real, xs, 50, max(2, min(1000, len(real) // 2, len(xs) // 2)))
            p, r = precision_recall(real[:m], xs[:m])
            d, c = density_coverage(real[:m], xs[:m])
            res.update(fid=fid(real, xs), kid=k_mean, kid_std=k_std, precision=p, recall=r, density=d, coverage=c)
        evaluation.report["samples"] = res
        evaluation.samples = x.float()

    def rows(self, report: Mapping[str, Any]) -> list[tuple[str, str]]:
        rows = likelihood_rows(report)
        s = report.get("samples")
        if s and "fid" in s:
            rows += [("samples (finite)", f"{s['n_samples']} ({100 * s['finite_share']:.1f}%)"),
                     ("FID (coordinates)", f"{s['fid']:.4f}"),
                     ("KID (coordinates)", f"{s['kid']:.5f} ± {s['kid_std']:.5f}"),
                     ("precision / recall", f"{s['precision']:.3f} / {s['recall']:.3f}"),
                     ("density / coverage", f"{s['density']:.3f} / {s['coverage']:.3f}")]
        return rows

    def summary(self, report: Mapping[str, Any]) -> dict[str, Any]:
        return {f"samples/{k}": v for k, v in report.get("samples", {}).items() if isinstance(v, int | float)}

    def columns(self) -> list[tuple[str, str, list[Column]]]:
        return [("Sample quality", "Samples against the test split on the raw coordinates.",
                 [Column("samples/fid", "FID", False), Column("samples/kid", "KID", False),
                  Column("samples/precision", "precision", True), Column("samples/recall", "recall", True),
                  Column("samples/density", "density", True), Column("samples/coverage", "coverage", True)])]
