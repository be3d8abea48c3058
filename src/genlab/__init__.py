"""genlab: train, sample and evaluate every major family of generative model behind one API.

Public API::

    import genlab
    run = genlab.train("vae", data="mnist", budget="2m")
    run = genlab.load(run.path)                 # a Run: model, config, modality, artifacts
    images = genlab.sample(run, 64, label=3)
    genlab.evaluate(run.path)

The names below are imported on first use (PEP 562), so ``import genlab.cli`` or the torch-free runtime of an
exported model (:mod:`genlab.export.runtime`) does not import torch. The registries fill themselves with the
built-in families, modalities and datasets on first lookup.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genlab.api import __version__, create, evaluate, inpaint, load, sample, train
    from genlab.core import DATASETS, MODELS, Batch, DataSpec, GenerativeModel
    from genlab.errors import GenlabError
    from genlab.modalities import MODALITIES, Modality, register_modality
    from genlab.run import Run

#: public name → the module it comes from
_PUBLIC = {
    **dict.fromkeys(("__version__", "create", "evaluate", "inpaint", "load", "sample", "train"), "genlab.api"),
    **dict.fromkeys(("DATASETS", "MODELS", "Batch", "DataSpec", "GenerativeModel"), "genlab.core"),
    "GenlabError": "genlab.errors",
    **dict.fromkeys(("MODALITIES", "Modality", "register_modality"), "genlab.modalities"),
    "Run": "genlab.run",
}

__all__ = ["DATASETS", "MODALITIES", "MODELS", "Batch", "DataSpec", "GenerativeModel", "GenlabError", "Modality",
           "Run", "__version__", "create", "evaluate", "inpaint", "load", "register_modality", "sample", "train"]


def __getattr__(name: str) -> Any:
    """Import a public name (registering the built-in families and modalities) or a submodule on first use."""
    if name in _PUBLIC:
        if _PUBLIC[name] != "genlab.errors":
            importlib.import_module("genlab.modalities")  # registers the modalities and their datasets
            importlib.import_module("genlab.models")  # registers the families
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"genlab.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"genlab.{name}":
            raise
        raise AttributeError(f"module 'genlab' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
