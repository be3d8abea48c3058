"""Modalities: one registered object per kind of data (``image``, ``vector``, ``text``, …); importing this package
registers the built-in ones and their datasets. See :mod:`genlab.modalities.base` for the contract."""

from genlab.modalities import image, text, vector  # noqa: F401  (register "image", "text", "vector")

# isort: split
from genlab.modalities import tabular  # noqa: F401  (registered after text: a token family's default stays text)
from genlab.modalities.base import (
    MODALITIES,
    Column,
    Evaluation,
    Modality,
    Splits,
    modality,
    register_modality,
    resolve_kind,
)

__all__ = ["MODALITIES", "Column", "Evaluation", "Modality", "Splits", "modality", "register_modality",
           "resolve_kind"]
