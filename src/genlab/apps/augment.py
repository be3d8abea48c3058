"""Data augmentation with a class-conditional run: a small labelled set, with and without synthetic examples, each
scored by the same fixed classifier on the run's test split.

The labelled set is ``labelled_subset(train.y, labels, label_seed)`` (:mod:`genlab.data.labels`: spread evenly over
the classes, seeded per class) — the same examples ``genlab train ssvae --labels N`` sees. Synthetic examples are
drawn class-balanced (``n / K`` per class, seeded) from the run. Classifiers (:data:`CLASSIFIERS`, the first one that
reads the run's data form is the default):

* ``cnn`` — images: the small CNN of :class:`genlab.metrics.classifier.DigitCNN` (the shipped feature network's
  shape), AdamW (lr 2e-3, weight decay 1e-4), cosine decay over a fixed number of steps of 64, label smoothing 0.05,
  random shifts of up to 2 pixels; with synthetic data every batch is half real (drawn with replacement), half
  synthetic, so the real labels are never drowned out.
* ``boosting`` — any fixed-size numeric data (tables, vectors; images flattened): scikit-learn's
  ``HistGradientBoostingClassifier`` with ``steps`` boosting iterations and leaves of at least 5 examples (a few
  labels must still split); with synthetic data the real and the
  synthetic examples carry equal total weight.

Both train the same number of steps with and without synthetic data, from the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.core import DataSpec, Registry
from genlab.data.labels import labelled_subset
from genlab.errors import CapabilityError, ConfigError, DataError
from genlab.run import Run

#: (real x, real y, synthetic x or None, synthetic y or None, spec, seed, steps) -> predict(x) -> labels
FitFn = Callable[[Tensor, Tensor, Tensor | None, Tensor | None, DataSpec, int, int], Callable[[Tensor], Tensor]]


@dataclass(frozen=True)
class Classifier:
    """A fixed classifier recipe for augmentation experiments.

    Arguments:
        forms: data forms it reads (empty: any fixed-size numeric form).
        steps: default training steps (optimizer steps or boosting iterations).
        fit: trains on real (and synthetic) data and returns a predictor of labels.
    """

    forms: tuple[str, ...]
    steps: int
    fit: FitFn


CLASSIFIERS: Registry[Classifier] = Registry("classifier")


def _shift(x: Tensor, g: torch.Generator, s: int) -> Tensor:
    b, _, h, w = x.shape
    padded = F.pad(x, (s, s, s, s))
    offs = torch.randint(0, 2 * s + 1, (b, 2), generator=g).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offs)])


def fit_cnn(x: Tensor, y: Tensor, xs: Tensor | None, ys: Tensor | None, spec: DataSpec, seed: int,
            steps: int) -> Callable[[Tensor], Tensor]:
    """Train :class:`~genlab.metrics.classifier.DigitCNN` (see the module docstring); returns its label predictor."""
    from genlab.metrics.classifier import DigitCNN

    torch.manual_seed(seed)
    c, h, _ = spec.shape
    net = DigitCNN(c, spec.num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    g = torch.Generator().manual_seed(seed)
    bs, s = 64, 2 if h >= 16 else 1
    net.train()
    for _ in range(steps):
        if xs is None or ys is None:
            idx = torch.randint(0, len(x), (bs,), generator=g)
            xb, yb = x[idx], y[idx]
        else:
            ir = torch.randint(0, len(x), (bs // 2,), generator=g)
            js = torch.randint(0, len(xs), (bs - bs // 2,), generator=g)
            xb, yb = torch.cat([x[ir], xs[js]]), torch.cat([y[ir], ys[js]])
        loss = F.cross_entropy(net(_shift(xb, g, s)), yb, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()

    @torch.no_grad()
    def predict(xt: Tensor) -> Tensor:
        return torch.cat([net(xt[i : i + 500]).argmax(1) for i in range(0, len(xt), 500)])

    return predict


def fit_boosting(x: Tensor, y: Tensor, xs: Tensor | None, ys: Tensor | None, spec: DataSpec, seed: int,
                 steps: int) -> Callable[[Tensor], Tensor]:
    """Train a histogram gradient-boosting classifier on flattened features; returns its label predictor."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    feats = x.reshape(len(x), -1).double().numpy()
    labels = y.numpy()
    weight = np.ones(len(feats))
    if xs is not None and ys is not None:
        syn = xs.reshape(len(xs), -1).double().numpy()
        weight = np.concatenate([weight, np.full(len(syn), len(feats) / len(syn))])
        feats, labels = np.concatenate([feats, syn]), np.concatenate([labels, ys.numpy()])
    clf = HistGradientBoostingClassifier(max_iter=steps, min_samples_leaf=5, random_state=seed, early_stopping=False)
    clf.fit(feats, labels, sample_weight=weight)

    def predict(xt: Tensor) -> Tensor:
        return torch.from_numpy(np.asarray(clf.predict(xt.reshape(len(xt), -1).double().numpy()), dtype=np.int64))

    return predict


CLASSIFIERS.register("cnn")(Classifier(("image",), 1500, fit_cnn))
CLASSIFIERS.register("boosting")(Classifier((), 200, fit_boosting))


def default_classifier(spec: DataSpec) -> str:
    """The first registered classifier that reads data of ``spec.form``."""
    return next(name for name, c in CLASSIFIERS.ordered() if not c.forms or spec.form in c.forms)


def synthetic(run: Run, n: int, *, seed: int = 0, chunk: int = 500, **options: Any) -> tuple[Tensor, Tensor]:
    """``n`` class-balanced samples (labels ``0, 1, …, K-1, 0, …``) from a conditional run, drawn in chunks."""
    from genlab.api import sample

    k = run.spec.num_classes
    labels = torch.arange(n) % k
    parts = [sample(run, len(labels[i : i + chunk]), label=labels[i : i + chunk], seed=seed + i, **options)
             for i in range(0, n, chunk)]
    return torch.cat(parts), labels


def accuracy(predict: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> float:
    """Share of ``x`` whose predicted label equals ``y``."""
    return float((predict(x) == y).double().mean())


def augment(run: Run, *, labels: int = 100, synthetic_sizes: Sequence[int] = (1000, 5000),
            classifier: str | None = None, classifier_steps: int | None = None, seed: int = 0,
            label_seed: int = 0, **options: Any) -> dict[str, Any]:
    """Test accuracy of a fixed classifier trained on ``labels`` real labelled examples alone and with each number
    of class-balanced synthetic examples from the run (see the module docstring).

    Arguments:
        run: a class-conditional run (its family must sample by class).
        labels: real labelled training examples (spread evenly over the classes).
        synthetic_sizes: numbers of synthetic examples to add, one experiment each.
        classifier: a name in :data:`CLASSIFIERS` (default: the first that reads the run's data form).
        classifier_steps: training steps of the classifier (its default when None).
        seed: seed of the classifier and of sampling.
        label_seed: seed of the choice of labelled examples.
        **options: the family's sampling options.

    Returns:
        ``{"classifier", "labels", "steps", "n_test", "real_only", "with_synthetic": {n: accuracy}}``.

    Raises:
        CapabilityError: for an unconditional run; ConfigError for a bad classifier, label count or size.
    """
    from genlab.api import load_splits

    if not run.model.conditional:
        raise CapabilityError(f"this {run.family} run is unconditional; augmentation needs samples by class "
                              "(train it on labelled data without --no-conditional)")
    name = classifier or default_classifier(run.spec)
    clf = CLASSIFIERS[name]
    if clf.forms and run.spec.form not in clf.forms:
        raise ConfigError(f"--classifier {name} reads {'/'.join(clf.forms)} data, not {run.spec.kind} data; use "
                          f"{default_classifier(run.spec)}")
    if any(n < 1 for n in synthetic_sizes):
        raise ConfigError("--synthetic sizes must be positive")
    n_steps = classifier_steps if classifier_steps is not None else clf.steps
    if n_steps < 1:
        raise ConfigError(f"--classifier-steps must be at least 1, got {n_steps}")
    splits = load_splits(run)
    train, test = splits.train, splits.test
    if train.y is None or test.y is None:
        raise DataError("augmentation needs labelled train and test splits")
    idx = labelled_subset(train.y, labels, label_seed)
    x, y = train.x[idx], train.y[idx]
    res: dict[str, Any] = {"family": run.family, "classifier": name, "labels": labels, "label_seed": label_seed,
                           "steps": n_steps, "seed": seed, "n_test": len(test)}
    res["real_only"] = accuracy(clf.fit(x, y, None, None, run.spec, seed, n_steps), test.x, test.y)
    res["with_synthetic"] = {}
    if synthetic_sizes:
        xs_all, ys_all = synthetic(run, max(synthetic_sizes), seed=seed, **options)
        for n in synthetic_sizes:
            xs, ys = xs_all[:n], ys_all[:n]  # labels cycle 0..K-1, so every head is class-balanced
            res["with_synthetic"][n] = accuracy(clf.fit(x, y, xs, ys, run.spec, seed, n_steps), test.x, test.y)
    return res

