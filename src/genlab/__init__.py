"""genlab: train, sample and evaluate every major family of generative model behind one API.

Public API::

    import genlab
    run = genlab.train("vae", data="mnist", budget="2m")
    run = genlab.load(run.path)                 # a Run: model, config, modality, artifacts
    images = genlab.sample(run, 64, label=3)
    genlab.evaluate(run.path)
"""

from genlab import modalities as _modalities  # noqa: F401  (registers the modalities and their datasets)
from genlab import models as _models  # noqa: F401  (registers the families)
from genlab.api import __version__, create, evaluate, inpaint, load, sample, train
from genlab.core import DATASETS, MODELS, Batch, DataSpec, GenerativeModel
from genlab.errors import GenlabError
from genlab.modalities import MODALITIES, Modality, register_modality
from genlab.run import Run

__all__ = ["DATASETS", "MODALITIES", "MODELS", "Batch", "DataSpec", "GenerativeModel", "GenlabError", "Modality",
           "Run", "__version__", "create", "evaluate", "inpaint", "load", "register_modality", "sample", "train"]
