"""A few labels among many examples: the one deterministic choice of labelled examples, and a split that hides the
rest of the labels for semi-supervised training.

``labelled_subset(y, n, seed)`` picks ``n`` examples spread evenly over the classes: class ``c`` (in label order)
gets ``n // K`` examples, and the first ``n % K`` classes one more; within a class the examples are the first ones of
a permutation drawn from ``seeded_generator("labels", seed, c)``. The choice depends only on the labels, ``n`` and
``seed`` — not on the training seed — so ``genlab train ssvae --labels 100`` and ``genlab augment --labels 100`` see
the same 100 labelled examples of a dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.core import DataSpec
from genlab.data import ArrayDataset, Dataset, seeded_generator
from genlab.errors import ConfigError

#: label value of an example whose label is hidden
UNLABELLED = -1


def labelled_subset(y: Tensor, n: int, seed: int = 0) -> Tensor:
    """Indices (ascending) of ``n`` labelled examples spread evenly over the classes (see the module docstring).

    Raises:
        ConfigError: for ``n`` below the number of classes, above the number of examples, or more than a class has.
    """
    y = torch.as_tensor(y, dtype=torch.long)
    classes = torch.unique(y).tolist()
    k = len(classes)
    if n > len(y):
        raise ConfigError(f"--labels {n} is more than the {len(y)} labelled training examples; give at most {len(y)}")
    if n < k:
        raise ConfigError(f"--labels {n} is fewer than the {k} classes; give at least one label per class")
    picked = []
    for i, c in enumerate(classes):
        share = n // k + (1 if i < n % k else 0)
        idx = torch.nonzero(y == c).flatten()
        if share > len(idx):
            raise ConfigError(f"--labels {n} needs {share} examples of class {c} but the data has {len(idx)}; "
                              f"give at most {k * min(int((y == c).sum()) for c in classes)}")
        perm = torch.randperm(len(idx), generator=seeded_generator("labels", seed, c))
        picked.append(idx[perm[:share]])
    return torch.cat(picked).sort().values


@dataclass
class SemiSupervised:
    """A training split where only some labels are seen (the rest read :data:`UNLABELLED`), with batches that mix
    a fixed number of labelled examples into every step.

    Each batch of ``B`` holds ``round(labelled_share · B)`` labelled examples (cycling through a fresh permutation of
    the labelled ones every pass) and the rest drawn from all examples with their labels hidden, as in Kingma et
    al.'s M2 setup where every example also counts as unlabelled. Batches depend only on (seed, step).

    Arguments:
        x: all training examples.
        labels: their true labels (kept for reference; batches show only the chosen ones).
        labelled: indices of the examples whose labels are seen.
        spec: the data spec.
        labelled_share: share of each batch taken from the labelled examples.
        augment: the split's training augmentation ``(x, generator) -> x`` (``--shift``, …), applied to each batch.
    """

    x: Tensor
    labels: Tensor
    labelled: Tensor
    spec: DataSpec
    labelled_share: float = 0.25
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None

    @property
    def y(self) -> Tensor:
        """Labels with the hidden ones set to :data:`UNLABELLED`."""
        y = torch.full_like(self.labels, UNLABELLED)
        y[self.labelled] = self.labels[self.labelled]
        return y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def _split(self, batch_size: int) -> tuple[int, int]:
        n_lab = max(1, round(self.labelled_share * batch_size)) if self.labelled_share > 0 else 0
        n_lab = min(n_lab, batch_size)
        return n_lab, batch_size - n_lab

    def steps_per_epoch(self, batch_size: int) -> int:
        return ArrayDataset(self.x, None, self.spec).steps_per_epoch(batch_size)

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
        n_lab, n_unl = self._split(batch_size)
        parts_x, parts_y = [], []
        if n_lab:
            m = len(self.labelled)
            start = step * n_lab
            pos = torch.arange(start, start + n_lab)
            epochs, within = pos // m, pos % m
            idx = torch.stack([self.labelled[torch.randperm(m, generator=seeded_generator("labelled", seed, int(e)))
                                             [int(w)]] for e, w in zip(epochs.tolist(), within.tolist(), strict=True)])
            parts_x.append(self.x[idx])
            parts_y.append(self.labels[idx])
        if n_unl:
            per_epoch = max(1, len(self) // n_unl)
            epoch, k = divmod(step, per_epoch)
            perm = torch.randperm(len(self), generator=seeded_generator("unlabelled", seed, epoch))
            idx = perm[k * n_unl : (k + 1) * n_unl]
            parts_x.append(self.x[idx])
            parts_y.append(torch.full((len(idx),), UNLABELLED, dtype=torch.long))
        x = torch.cat(parts_x)
        if self.augment is not None:
            x = self.augment(x, seeded_generator("augment", seed, step))
        return x, torch.cat(parts_y)

    def head(self, n: int) -> ArrayDataset:
        return ArrayDataset(self.x[:n], self.y[:n], self.spec)


def semi_supervised(train: Dataset, n: int, seed: int = 0, labelled_share: float = 0.25) -> SemiSupervised:
    """The training split with only ``n`` labels kept (:func:`labelled_subset`), as a :class:`SemiSupervised`.

    Raises:
        ConfigError: for unlabelled data or an ``n`` the data cannot give.
    """
    if train.y is None or train.spec.num_classes == 0:
        raise ConfigError("--labels needs labelled data (a built-in labelled dataset, class subfolders or an .npz "
                          "with y)")
    return SemiSupervised(train.x, train.y, labelled_subset(train.y, n, seed), train.spec, labelled_share,
                          getattr(train, "augment", None))
