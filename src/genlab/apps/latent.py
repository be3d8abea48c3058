"""The latent space of a run: interpolation between given examples, inversion round trips, and editing along
attribute directions.

Every family with ``latent_space`` maps data to a deterministic code and back (``to_latent`` / ``from_latent``): a
VAE's posterior mean, a flow's forward map, a diffusion model's DDIM inversion, the semi-supervised VAE's
``[z, q(y|x)]``. Paths between two codes follow the family's ``latent_path``: spherical interpolation (slerp) for
codes that are standard Gaussian under the prior — a straight line between two such points runs through the
low-norm middle where the prior has almost no mass — and straight lines otherwise.

An attribute direction is the difference of class means of the codes: ``d = mean(z | y = a) − mean over the other
classes of their class means``, from up to ``per_class`` training examples of each class; an edit moves a code to
``z + s · d`` and decodes it.

References:
    White, "Sampling Generative Networks", 2016, arXiv:1609.04468 (slerp; attribute vectors from class means).
    Larsen et al., "Autoencoding beyond pixels using a learned similarity metric", 2016, arXiv:1512.09300.
    Song et al., "Denoising Diffusion Implicit Models", 2021, arXiv:2010.02502 (DDIM inversion, interpolation).
    Kingma & Dhariwal, "Glow", 2018, arXiv:1807.03039 (flow latent interpolation and manipulation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab.core import MODELS, GenerativeModel
from genlab.errors import CapabilityError, ConfigError, DataError
from genlab.run import Run


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation ``sin((1-t)θ)/sin θ · a + sin(tθ)/sin θ · b`` of flattened codes ``a``, ``b``
    ``(B, …)`` at fractions ``t`` ``(S,)`` → ``(B, S, …)``; straight lines where ``a`` and ``b`` are parallel."""
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp(min=1e-12)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))[:, None]  # (B, 1)
    tt = t.double()[None, :]  # (1, S)
    sin = torch.sin(theta)
    near = sin.abs() < 1e-6
    wa = torch.where(near, 1 - tt, torch.sin((1 - tt) * theta) / torch.where(near, 1.0, sin))
    wb = torch.where(near, tt, torch.sin(tt * theta) / torch.where(near, 1.0, sin))
    out = wa[..., None] * fa[:, None] + wb[..., None] * fb[:, None]  # (B, S, D)
    return out.to(a.dtype).reshape(a.shape[0], len(t), *a.shape[1:])


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Straight-line interpolation ``(1 - t) a + t b`` → ``(B, S, …)``."""
    tt = t.to(a.dtype).reshape(1, -1, *([1] * (a.ndim - 1)))
    return (1 - tt) * a[:, None] + tt * b[:, None]


def _model(run: Run) -> GenerativeModel:
    model = run.model
    if not model.has_latent_space:
        able = ", ".join(n for n, c in MODELS.items() if c.latent_space)
        raise CapabilityError(f"a {model.family} run on {model.spec.form} data has no latent space; use a {able} "
                              "run")
    return model


def _cond(run: Run, label: int | Tensor | None, n: int) -> Tensor | None:
    if label is None:
        return None
    cond = torch.as_tensor(label, dtype=torch.long).reshape(-1)
    if not run.model.conditional:
        raise CapabilityError(f"this {run.family} run is unconditional; drop --label")
    cond = cond.expand(n) if cond.numel() == 1 else cond
    if cond.numel() != n:
        raise ConfigError(f"got {cond.numel()} labels for {n} examples; give one label or one per example")
    k = run.spec.num_classes
    if int(cond.min()) < 0 or int(cond.max()) >= k:
        raise ConfigError(f"label {int(cond.max() if cond.max() >= k else cond.min())} is out of range; this model has "
                          f"classes 0..{k - 1}")
    return cond.to(run.model.device)


def _check_shape(run: Run, x: Tensor, what: str) -> Tensor:
    x = torch.as_tensor(x)
    x = x[None] if x.ndim == len(run.spec.shape) else x
    if tuple(x.shape[1:]) != tuple(run.spec.shape):
        raise DataError(f"{what} has examples of shape {tuple(x.shape[1:])} but the run models {tuple(run.spec.shape)}")
    return x


def interpolate(run: Run, a: Tensor, b: Tensor, steps: int = 8, *, label: int | Tensor | None = None) -> Tensor:
    """Decoded points on the latent path from each example of ``a`` to the matching one of ``b``.

    Arguments:
        run: a run whose family has a latent space.
        a, b: ``(N, *shape)`` examples (or one each) in the data representation.
        steps: points per path, the ends included (the ends are the decoded codes of ``a`` and ``b``).
        label: class label(s) for a conditional model (one for both ends of every path, or one per path).

    Returns:
        ``(N · steps, *shape)``: path after path.

    Raises:
        CapabilityError: for a family without a latent space; ConfigError/DataError for bad inputs.
    """
    model = _model(run)
    if steps < 2:
        raise ConfigError(f"--steps must be at least 2 (the two ends), got {steps}")
    a, b = _check_shape(run, a, "--from"), _check_shape(run, b, "--to")
    if len(a) != len(b):
        raise DataError(f"--from has {len(a)} examples but --to has {len(b)}; give as many of each")
    n = len(a)
    cond = _cond(run, label, n)
    with torch.no_grad():
        z = model.to_latent(torch.cat([a, b]).to(model.device), None if cond is None else torch.cat([cond, cond]))
        za, zb = z[:n], z[n:]
        t = torch.linspace(0, 1, steps, device=z.device)
        path = (slerp if model.latent_path == "slerp" else lerp)(za, zb, t)  # (N, S, …)
        flat = path.reshape(n * steps, *z.shape[1:])
        c = None if cond is None else cond.repeat_interleave(steps)
        return model.from_latent(flat, c).cpu()


def round_trip(run: Run, x: Tensor, *, label: int | Tensor | None = None, batch_size: int = 100) -> dict[str, Any]:
    """How well decoding a code gives the data back: ``from_latent(to_latent(x))`` against ``x``.

    Returns:
        ``{"n", "mae": mean absolute error in levels (gray levels for 8-bit images), "max_abs", "exact_share": share
        of values reproduced exactly, "psnr_db": mean PSNR on the unit scale, "code_dims", "data_dims"}``.
    """
    model = _model(run)
    x = _check_shape(run, x, "the data")
    cond = _cond(run, label, len(x))
    recs, code_dims = [], 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            c = None if cond is None else cond[i : i + batch_size]
            z = model.to_latent(x[i : i + batch_size].to(model.device), c)
            code_dims = int(z[0].numel())
            recs.append(model.from_latent(z, c).cpu())
    rec = torch.cat(recs)
    diff = (rec.double() - x.double()).abs()
    scale = float(run.spec.levels - 1) if run.spec.levels else 1.0
    mse = (diff / scale).pow(2).flatten(1).mean(1)
    psnr = (10 * torch.log10(1.0 / mse.clamp(min=1e-12))).clamp(max=100.0)
    return {"n": len(x), "mae": float(diff.mean()), "max_abs": float(diff.max()),
            "exact_share": float((diff == 0).double().mean()), "psnr_db": float(psnr.mean()),
            "code_dims": code_dims, "data_dims": int(run.spec.dims)}


def class_means(run: Run, *, per_class: int = 100, batch_size: int = 100) -> Tensor:
    """Mean latent code of up to ``per_class`` training examples of each class ``(K, …)`` (encoded with their
    labels when the model is conditional).

    Raises:
        DataError: when the run's training data has no labels.
    """
    from genlab.api import load_splits

    model = _model(run)
    if per_class < 1:
        raise ConfigError(f"--per-class must be at least 1, got {per_class}")
    train = load_splits(run).train
    if train.y is None or run.spec.num_classes == 0:
        raise DataError("attribute directions need labelled training data (class means of the codes)")
    means = []
    with torch.no_grad():
        for c in range(run.spec.num_classes):
            idx = torch.nonzero(train.y == c).flatten()[:per_class]
            if len(idx) == 0:
                raise DataError(f"the training data has no example of class {c}")
            codes = []
            for i in range(0, len(idx), batch_size):
                j = idx[i : i + batch_size]
                cond = train.y[j].to(model.device) if model.conditional else None
                codes.append(model.to_latent(train.x[j].to(model.device), cond).double())
            means.append(torch.cat(codes).mean(0))
    return torch.stack(means)


def attribute_index(run: Run, attribute: int | str) -> int:
    """A class index from an index or a class name.

    Raises:
        ConfigError: for a class the data does not have.
    """
    names = list(run.spec.class_names)
    k = run.spec.num_classes
    if isinstance(attribute, str) and attribute in names and not attribute.isdigit():
        return names.index(attribute)
    try:
        a = int(attribute)
    except ValueError:
        raise ConfigError(f"unknown --attribute {attribute!r}; give a class index 0..{k - 1} or a class name "
                          f"({', '.join(names)})") from None
    if not 0 <= a < k:
        raise ConfigError(f"--attribute {a} is out of range; the data has classes 0..{k - 1}")
    return a


def attribute_direction(run: Run, attribute: int | str, *, per_class: int = 100) -> Tensor:
    """``mean code of class a − mean of the other classes' mean codes`` (see the module docstring)."""
    if run.spec.num_classes < 2:
        raise DataError("attribute directions need labelled data with at least 2 classes")
    a = attribute_index(run, attribute)
    means = class_means(run, per_class=per_class)
    others = torch.cat([means[:a], means[a + 1 :]]).mean(0)
    return means[a] - others


def edit(run: Run, x: Tensor, attribute: int | str, strength: float = 1.0, *, label: int | Tensor | None = None,
         per_class: int = 100, direction: Tensor | None = None) -> Tensor:
    """Move the codes of ``x`` along the direction of ``attribute`` by ``strength`` and decode them.

    Arguments:
        run: a run whose family has a latent space, trained on labelled data.
        x: ``(N, *shape)`` examples in the data representation.
        attribute: class index or name whose direction to follow.
        strength: multiple of the direction to add (negative moves away from the class).
        label: the examples' labels, for a conditional model.
        per_class: training examples per class for the class means.
        direction: a precomputed :func:`attribute_direction` (skips the class means).

    Returns:
        the edited examples, like ``x``.
    """
    model = _model(run)
    x = _check_shape(run, x, "--images")
    cond = _cond(run, label, len(x))
    d = direction if direction is not None else attribute_direction(run, attribute, per_class=per_class)
    with torch.no_grad():
        z = model.to_latent(x.to(model.device), cond)
        return model.from_latent((z.double() + strength * d.to(z.device)).to(z.dtype), cond).cpu()


def _first_examples(run: Run, source: str | Path, what: str) -> tuple[Tensor, Tensor | None]:
    ex = run.modality.read_examples(run, Path(source))
    if ex.units is not None:
        raise DataError(f"{what} must hold examples the model encodes one by one")
    return ex.x, ex.y


def interpolate_files(run: Run, source: str | Path, target: str | Path, out: str | Path, *, steps: int = 8,
                      label: int | None = None) -> tuple[Path, int]:
    """``genlab interpolate``: paths between the examples of two files, written as one grid row per path.

    Returns:
        (the output path, how many paths).
    """
    out = Path(out)
    if not out.parent.exists():
        raise ConfigError(f"folder {out.parent} does not exist; create it or choose another --out")
    fmt = run.modality.sample_format(out, None)
    _model(run)
    a, _ = _first_examples(run, source, "--from")
    b, _ = _first_examples(run, target, "--to")
    path = interpolate(run, a, b, steps, label=label)
    return run.modality.write_samples(run, path, out, fmt, None, {"nrow": steps}), len(a)


def edit_files(run: Run, images: str | Path, out: str | Path, *, attribute: int | str, strength: float = 1.0,
               label: int | None = None, per_class: int = 100) -> tuple[Path, int]:
    """``genlab edit``: edit the examples of a file along an attribute direction and write the results
    (an image grid shows the inputs above the edits).

    Returns:
        (the output path, how many examples were edited).
    """
    out = Path(out)
    if not out.parent.exists():
        raise ConfigError(f"folder {out.parent} does not exist; create it or choose another --out")
    fmt = run.modality.sample_format(out, None)
    _model(run)
    attribute_index(run, attribute)
    x, y = _first_examples(run, images, "--images")
    lab: int | Tensor | None = label if label is not None else (y if run.model.conditional else None)
    edited = edit(run, x, attribute, strength, label=lab, per_class=per_class)
    shown = torch.cat([x, edited]) if fmt == run.modality.sample_formats[0] else edited
    return run.modality.write_samples(run, shown, out, fmt, None, {"nrow": len(x)}), len(x)
