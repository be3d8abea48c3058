"""Likelihood metrics with one definition across families.

Bits per dimension is always about the discrete data: for 8-bit images ``bpd = -log2 P(x) / D`` with
``D = C·H·W``. Families report ``log P(x)`` in nats through ``log_prob``: exactly (autoregressive models), or as the
bound they state (VAE: IWAE; flows: the dequantization bound; diffusion: the variational bound). A model putting
the uniform distribution on 256 values per pixel scores exactly 8 bits/dim.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from genlab.core import GenerativeModel
from genlab.data import Dataset


def bits_per_dim(log_prob_nats: Tensor | float, dims: int) -> float:
    """Convert a (mean) log-probability in nats of one example with ``dims`` dimensions to bits/dim."""
    return float(-torch.as_tensor(log_prob_nats, dtype=torch.float64).mean() / (dims * math.log(2)))


@torch.no_grad()
def dataset_log_prob(model: GenerativeModel, data: Dataset, batch_size: int = 100, **kwargs: Any) -> Tensor:
    """``model.log_prob`` of every example in ``data`` (nats), as a float64 CPU tensor."""
    model.eval()
    out = []
    for lo in range(0, len(data), batch_size):
        x = data.x[lo : lo + batch_size].to(model.device)
        y = None if data.y is None else data.y[lo : lo + batch_size].to(model.device)
        out.append(model.log_prob(x, y, **kwargs).double().cpu())
    return torch.cat(out)


def likelihood_report(model: GenerativeModel, data: Dataset, batch_size: int = 100,
                      **kwargs: Any) -> dict[str, Any]:
    """Test NLL (nats per example), bits/dim and the kind of number it is, or ``likelihood: none``."""
    how = model.likelihood
    if how == "none":
        return {"likelihood": "none", "note": f"{model.family} has no likelihood"}
    lp = dataset_log_prob(model, data, batch_size, **kwargs)
    d = model.spec.dims
    return {
        "likelihood": how,
        "nll_nats": float(-lp.mean()),
        "nll_nats_sem": float(lp.std() / math.sqrt(len(lp))) if len(lp) > 1 else 0.0,
        "bits_per_dim": bits_per_dim(lp, d),
        "n_examples": len(lp),
        "dims": d,
    }
