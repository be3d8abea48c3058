"""Modalities: one registered object per kind of data (``image``, ``vector``, ``text``, …); importing this package
registers the built-in ones and their datasets. See :mod:`genlab.modalities.base` for the contract."""

from genlab.modalities import (  # noqa: F401  (register "image", "text", "vector")
    image,
    music,
    text,
    vector,
)

# isort: split
from genlab.modalities import tabular  # noqa: F401  (registered after text: a token family's default stays text)
from genlab.modalities.base import (
    MODALITIES,
    Column,
    Evaluation,
    Examples,
    Modality,
    Splits,
    modality,
    register_modality,
    resolve_kind,
)

__all__ = ["MODALITIES", "Column", "Evaluation", "Examples", "Modality", "Splits", "modality", "register_modality",
           "resolve_kind"]

# registered after the kinds above, so that a token family without --data still defaults to text
from genlab.modalities import molecule  # noqa: F401  (register "molecule", "moses", "moses-100k")
