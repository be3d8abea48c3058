"""Accuracy of a family's own classifier (families with ``classifies``, e.g. the semi-supervised VAE's q(y | x))."""

from __future__ import annotations

from typing import Any

import torch

from genlab.core import GenerativeModel
from genlab.data import Dataset
from genlab.errors import DataError


@torch.no_grad()
def classifier_report(model: GenerativeModel, data: Dataset, batch_size: int = 100) -> dict[str, Any]:
    """Top-1 accuracy, per-class accuracy and mean log-likelihood of the true label under ``model.classify``.

    Raises:
        DataError: for data without labels.
    """
    if data.y is None:
        raise DataError("classifier accuracy needs labelled data")
    x, y = data.x, data.y
    probs = torch.cat([model.classify(x[i : i + batch_size].to(model.device)).cpu()
                       for i in range(0, len(x), batch_size)])
    pred = probs.argmax(1)
    k = probs.shape[1]
    per_class = {str(c): float((pred[y == c] == c).double().mean()) for c in range(k) if bool((y == c).any())}
    nll = float(-torch.log(probs[torch.arange(len(y)), y].clamp(min=1e-12)).mean())
    return {"accuracy": float((pred == y).double().mean()), "per_class": per_class, "nll": nll,
            "n_examples": len(y)}
