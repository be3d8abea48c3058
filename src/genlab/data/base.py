"""The dataset protocol the trainer reads, in-memory splits and seeded generators (see :mod:`genlab.data`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class Dataset(Protocol):
    """What the trainer and the metrics read from a split (:class:`ArrayDataset`, a token stream, …)."""

    spec: DataSpec

    @property
    def x(self) -> Tensor:
        """All examples ``(N, *spec.shape)`` in the data representation."""
        ...

    @property
    def y(self) -> Tensor | None:
        """Integer labels ``(N,)`` or None."""
        ...

    def __len__(self) -> int: ...

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches of ``batch_size`` in one pass over the split."""
        ...

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor | None]:
        """The global training batch of ``step`` (a function of ``seed`` and ``step`` only)."""
        ...

    def head(self, n: int) -> ArrayDataset:
        """The first ``n`` examples (for quick evaluation)."""
        ...


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
