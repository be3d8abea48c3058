"""Shared data machinery: in-memory splits, the dataset protocol the trainer reads, seeded generators.

What is specific to a kind of data (its datasets, loading, files) lives in :mod:`genlab.modalities`; the helpers
they share live here (:mod:`genlab.data.images` pixel mappings, :mod:`genlab.data.tokens` token streams,
:mod:`genlab.data.vocab` tokenizers, :mod:`genlab.data.text` corpora). A loaded split is a :class:`Dataset`:
examples in the data representation plus a :class:`DataSpec`, with a deterministic batch order that depends only
on (seed, step) so ``--resume`` and DDP reproduce it exactly.

The names below come from :mod:`genlab.data.base` on first use (PEP 562): the torch-free modules of this package
(:mod:`~genlab.data.vocab`, :mod:`~genlab.data.music`, :mod:`~genlab.data.molecules`, the numpy half of
:mod:`~genlab.data.table_codec`) serve the exported-model runtime, which must not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genlab.data.base import ArrayDataset, Dataset, seeded_generator

__all__ = ["ArrayDataset", "Dataset", "seeded_generator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("genlab.data.base"), name)
    raise AttributeError(f"module 'genlab.data' has no attribute {name!r}")
