"""Data modalities: each module registers its built-in datasets and provides a config + loader.

A loaded split is an :class:`ArrayDataset`: tensors in the data representation plus a :class:`DataSpec`, with a
deterministic batch order that depends only on (seed, step) so ``--resume`` and DDP reproduce it exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genlab.core import DataSpec
from genlab.errors import DataError


def seeded_generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded from a hash of ``parts`` (e.g. ``("order", seed, epoch)``)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
    return g


@dataclass
class ArrayDataset:
    """One split held in memory: ``x`` in the data representation, optional integer labels ``y``.

    Arguments:
        x: examples, first dimension indexes them.
        y: labels ``(N,)`` (``int64``) or None.
        spec: what a model needs to know about the data.
        augment: optional function ``(x, generator) -> x`` applied to training batches.
    """

    x: Tensor
    y: Tensor | None
    spec: DataSpec
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def steps_per_epoch(self, batch_size: int) -> int:
        if len(self) < batch_size:
            raise DataError(f"the training split has {len(self)} examples, fewer than the batch size "
                            f"{batch_size}; lower --batch-size")
        return len(self) // batch_size

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor | None]:
        """The global training batch of ``step``: a fresh permutation each epoch, last partial batch dropped."""
        per_epoch = self.steps_per_epoch(batch_size)
        epoch, k = divmod(step, per_epoch)
        perm = torch.randperm(len(self), generator=seeded_generator("order", seed, epoch))
        idx = perm[k * batch_size : (k + 1) * batch_size]
        x = self.x[idx]
        if self.augment is not None:
            x = self.augment(x, seeded_generator("augment", seed, step))
        return x, None if self.y is None else self.y[idx]

    def head(self, n: int) -> ArrayDataset:
        """The first ``n`` examples (for quick evaluation)."""
        return ArrayDataset(self.x[:n], None if self.y is None else self.y[:n], self.spec)


@dataclass(frozen=True)
class Modality:
    """A data kind: its config class and the loader turning a config into (train, test, preprocessing)."""

    config_cls: type
    load: Callable[[Any], tuple[ArrayDataset, ArrayDataset, dict[str, Any]]]


MODALITIES: dict[str, Modality] = {}


def modality(kind: str) -> Modality:
    from genlab.data import images, vectors  # noqa: F401  (register "image" and "vector")

    if kind not in MODALITIES:
        raise DataError(f"no loader for {kind} data in this genlab")
    return MODALITIES[kind]


def data_kind(data: str | None, kinds: tuple[str, ...]) -> str:
    """The data kind a family modelling ``kinds`` trains on for ``--data data``.

    A built-in dataset may declare its kind (a ``data_kind`` attribute on its loader); paths (folders, ``.npz``)
    and undeclared names are images for a family that models images, else the family's first kind; no ``data``
    means the family's first kind.

    Raises:
        DataError: when the dataset's declared kind is not one the family models.
    """
    if data is None:
        return kinds[0]
    modality(kinds[0])  # make sure the built-in datasets are registered
    from genlab.core import DATASETS

    declared = getattr(DATASETS[data], "data_kind", None) if data in DATASETS else None
    kind = declared or ("image" if "image" in kinds else kinds[0])
    if kind not in kinds:
        raise DataError(f"'{data}' is {kind} data but this family models {'/'.join(kinds)} data; pick another --data")
    return kind
