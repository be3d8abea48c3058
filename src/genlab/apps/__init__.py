"""What models are used for besides sampling, each one API call on any run whose family can do it (the family's
capability flags decide) and each measured against a plain baseline in ``benchmarks/apps.py``:

* :mod:`genlab.apps.anomaly` — anomaly scores (−log p or the family's bound, reconstruction error, complexity- and
  likelihood-ratio-corrected scores) and AUROC;
* :mod:`genlab.apps.denoise` — Gaussian denoising (diffusion, VAE encode–decode; non-local means beside them),
  PSNR and SSIM;
* :mod:`genlab.apps.augment` — a small labelled set plus class-conditional samples, scored by a fixed classifier;
* :mod:`genlab.apps.latent` — interpolation, inversion round trips and attribute editing in latent space.

The data comes and goes through the run's modality (:meth:`~genlab.modalities.Modality.read_examples`,
``read_noisy``, ``write_samples``); nothing here tests a kind of data by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from genlab.core import GenerativeModel
from genlab.errors import CapabilityError
from genlab.run import Run


def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    """``fn`` over ``x`` in chunks of ``batch_size`` along the first dimension, results concatenated (on the CPU)."""
    if len(x) == 0:
        raise ValueError("no examples")
    return torch.cat([fn(x[i : i + batch_size]).cpu() for i in range(0, len(x), batch_size)])


def bottleneck(model: GenerativeModel, example: Tensor) -> bool:
    """True when the model's latent code of ``example`` has fewer numbers than the example itself, so that
    decoding its code is a lossy reconstruction (a VAE); False for invertible latents (flows, DDIM inversion),
    whose reconstruction is the input again.

    Raises:
        CapabilityError: for a family without a latent space.
    """
    if not model.has_latent_space:
        raise CapabilityError(f"family '{model.family}' has no latent space (no encoder)")
    cond = torch.zeros(1, dtype=torch.long, device=model.device) if model.conditional else None
    with torch.no_grad():
        z = model.to_latent(example[:1].to(model.device), cond)
    return z[0].numel() < example[0].numel()


def configure(run: Run, options: Mapping[str, Any]) -> Run:
    """Apply evaluation-time model settings (fields of the family's config, e.g. ``iwae_k``, ``inversion_steps``)
    to a loaded run; returns the run.

    Raises:
        ConfigError: for an unknown option or a bad value.
    """
    from genlab.config import build

    if options:
        run.model.config = build(type(run.model).config_cls, dict(options), base=run.model.config)
    return run
