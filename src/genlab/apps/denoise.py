"""Gaussian denoising with a trained run, a classical baseline beside it, and the scores that compare them.

Noise model: ``y = x + σ n`` with ``n ~ N(0, I)`` on the data's unit scale (8-bit pixels / 255, so ``σ = 0.1`` is
about 25 gray levels), not clipped. Methods:

* a family with ``denoising`` (diffusion) runs its reverse process from the noisy data at the matching noise level,
  optionally with a data-consistency step (:func:`genlab.samplers.restore.denoise_from`);
* a family whose latent is a bottleneck (VAE, ssvae) encodes the noisy data (clipped and rounded to the data's
  levels) and decodes its code — the reconstruction keeps what the model knows and drops the rest;
* :func:`non_local_means` — scikit-image's non-local means (Buades et al.) told the true σ, the classical baseline.

Scores: :func:`psnr` (own formula, checked against scikit-image) and :func:`ssim` (scikit-image's
``structural_similarity``, Wang et al. 2004), both on the [0, 1] scale with data range 1.

References:
    Buades, Coll & Morel, "A non-local algorithm for image denoising", CVPR 2005.
    Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to structural similarity",
    IEEE TIP 2004.
    Kawar et al., "Denoising Diffusion Restoration Models", 2022, arXiv:2201.11793.
    Zhu et al., "DiffPIR", 2023, arXiv:2305.08995.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.apps import batched, bottleneck
from genlab.config import build
from genlab.errors import CapabilityError, ConfigError, DataError
from genlab.extras import require
from genlab.run import Run


def add_noise(x: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """``x / (levels - 1) + σ n`` as float32 for data ``x`` with discrete levels (8-bit images: ``/ 255``), seeded."""
    if not sigma > 0:
        raise ConfigError(f"--sigma must be positive, got {sigma}")
    g = torch.Generator().manual_seed(seed)
    v = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return v + sigma * torch.randn(v.shape, generator=g)


def _check(run: Run, noisy: Tensor, sigma: float) -> Tensor:
    noisy = torch.as_tensor(noisy)
    noisy = noisy[None] if noisy.ndim == len(run.spec.shape) else noisy
    if tuple(noisy.shape[1:]) != tuple(run.spec.shape):
        raise DataError(f"noisy data has shape {tuple(noisy.shape[1:])} per example but the run models "
                        f"{tuple(run.spec.shape)}")
    if not noisy.dtype.is_floating_point or not torch.isfinite(noisy).all():
        raise DataError("noisy data must be finite floats on the data's unit scale (8-bit pixels / 255)")
    if not sigma > 0:
        raise ConfigError(f"--sigma must be positive, got {sigma}")
    return noisy.float()


def denoise(run: Run, noisy: Tensor, sigma: float, *, label: int | Tensor | None = None, seed: int = 0,
            consistency: float = 0.0, batch_size: int = 250, **options: Any) -> Tensor:
    """Denoise with the run's family: its own reverse process when it has ``denoising``, else encode–decode
    through a bottleneck latent (see the module docstring).

    Arguments:
        run: a trained run.
        noisy: ``(N, *shape)`` floats on the data's unit scale (or one example).
        sigma: noise standard deviation on that scale.
        label: class label(s) for a conditional model.
        seed: seed of any sampling noise.
        consistency: data-consistency weight of the reverse process (0 = none).
        batch_size: examples per call.
        **options: the family's sampling options (``steps``, ``sampler``, ``eta``, …).

    Returns:
        the clean estimates in the data representation (``uint8`` images).

    Raises:
        CapabilityError: for a family that can do neither; DataError for data of the wrong shape.
    """
    model = run.model
    noisy = _check(run, noisy, sigma)
    cls = type(model).sample_options_cls
    if options:
        if cls is None:
            raise ConfigError(f"family '{model.family}' takes no sampling option --{next(iter(options))}")
        given: Any = build(cls, options)  # validated and typed; only the options given are passed on
        options = {k: getattr(given, k) for k in options}
    cond = None if label is None else torch.as_tensor(label, dtype=torch.long).reshape(-1)
    if cond is not None and cond.numel() == 1:
        cond = cond.expand(len(noisy))
    if model.denoising:
        g = torch.Generator(device=model.device).manual_seed(seed)
        pos = {"i": 0}

        def restore(xb: Tensor) -> Tensor:
            c = None if cond is None else cond[pos["i"] : pos["i"] + len(xb)]
            pos["i"] += len(xb)
            return model.denoise(xb, sigma, c, generator=g, consistency=consistency, **options)

        return batched(restore, noisy, batch_size)
    if model.has_latent_space and bottleneck(model, torch.zeros((1, *run.spec.shape), dtype=torch.uint8)):
        if options:
            raise ConfigError(f"denoising with family '{model.family}' (encode-decode) takes no sampling options")
        levels = run.spec.levels or 256
        quantized = (noisy.clamp(0, 1) * (levels - 1)).round().to(torch.uint8 if levels <= 256 else torch.int64)
        pos = {"i": 0}

        def recode(xb: Tensor) -> Tensor:
            c = None if cond is None else cond[pos["i"] : pos["i"] + len(xb)].to(model.device)
            pos["i"] += len(xb)
            with torch.no_grad():
                return model.from_latent(model.to_latent(xb.to(model.device), c), c)

        return batched(recode, quantized, batch_size)
    raise CapabilityError(f"family '{model.family}' cannot denoise: use a diffusion run (reverse process) or a "
                          "vae/ssvae run (encode-decode)")


def non_local_means(noisy: Tensor, sigma: float) -> Tensor:
    """scikit-image non-local means (fast mode, 5×5 patches, search distance 6, ``h = 0.8 σ``) of images on the
    [0, 1] scale ``(N, C, H, W)`` given the true σ → ``uint8`` images.

    Raises:
        ExtraMissing: without scikit-image (``pip install 'genlab[apps]'``).
    """
    restoration = require("skimage.restoration", "apps", "non-local means denoising")
    out = []
    for img in noisy.detach().cpu().numpy().astype(np.float64):
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        den = restoration.denoise_nl_means(arr, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                                           patch_distance=6, channel_axis=None if img.shape[0] == 1 else -1)
        den = den[None] if img.shape[0] == 1 else den.transpose(2, 0, 1)
        out.append(den)
    return torch.from_numpy((np.clip(np.stack(out), 0, 1) * 255).round().astype(np.uint8))


def psnr(clean: Tensor, estimate: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(1 / MSE)`` on the [0, 1] scale (data range 1), in dB."""
    a = torch.as_tensor(clean).double() / 255.0
    b = torch.as_tensor(estimate).double() / 255.0
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(clean: Tensor, estimate: Tensor) -> Tensor:
    """Structural similarity per image (scikit-image ``structural_similarity``, Gaussian-free 7×7 windows,
    data range 1) of ``uint8`` images ``(N, C, H, W)``.

    Raises:
        ExtraMissing: without scikit-image.
    """
    metrics = require("skimage.metrics", "apps", "SSIM")
    a = torch.as_tensor(clean).numpy().astype(np.float64) / 255.0
    b = torch.as_tensor(estimate).numpy().astype(np.float64) / 255.0
    vals = []
    for x, y in zip(a, b, strict=True):
        if x.shape[0] == 1:
            vals.append(metrics.structural_similarity(x[0], y[0], data_range=1.0))
        else:
            vals.append(metrics.structural_similarity(x.transpose(1, 2, 0), y.transpose(1, 2, 0), data_range=1.0,
                                                      channel_axis=-1))
    return torch.tensor(vals, dtype=torch.float64)


def denoise_files(run: Run, images: str | Path, sigma: float, out: str | Path, *, label: int | None = None,
                  seed: int = 0, consistency: float = 0.0, **options: Any) -> tuple[Path, int]:
    """``genlab denoise``: read noisy data (the run's modality), denoise it, write inputs and results.

    Returns:
        (the output path, how many examples were denoised).

    Raises:
        CapabilityError: for a modality that cannot be denoised or a family that cannot denoise.
    """
    out = Path(out)
    if not out.parent.exists():
        raise ConfigError(f"folder {out.parent} does not exist; create it or choose another --out")
    if "denoise" not in run.modality.capabilities:
        raise CapabilityError(f"{run.modality.kind} data cannot be denoised")
    if not (run.model.denoising or run.model.has_latent_space):
        raise CapabilityError(f"family '{run.family}' cannot denoise: use a diffusion run (reverse process) or a "
                              "vae/ssvae run (encode-decode)")
    if out.suffix.lower() not in (".png", ".npz"):
        raise ConfigError(f"--out must end in .png or .npz, got {out.name}")
    noisy = run.modality.read_noisy(run, Path(images))
    clean = denoise(run, noisy, sigma, label=label, seed=seed, consistency=consistency, **options)
    return run.modality.write_denoised(run, noisy, clean, out), len(clean)
