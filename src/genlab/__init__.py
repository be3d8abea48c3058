"""genlab: train, sample and evaluate every major family of generative model behind one API.

Public API::

    import genlab
    run = genlab.train("vae", data="mnist", budget="2m")
    model = genlab.load(run.path)
    images = genlab.sample(model, 64, label=3)
    genlab.evaluate(run.path)
"""

from genlab import models as _models  # noqa: F401  (registers the families)
from genlab.api import Run, __version__, create, evaluate, load, sample, train
from genlab.core import DATASETS, MODELS, Batch, DataSpec, GenerativeModel
from genlab.data import images as _images  # noqa: F401  (registers the image datasets)
from genlab.errors import GenlabError

__all__ = ["DATASETS", "MODELS", "Batch", "DataSpec", "GenerativeModel", "GenlabError", "Run", "__version__",
           "create", "evaluate", "load", "sample", "train"]
