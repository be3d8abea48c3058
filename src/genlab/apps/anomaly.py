"""Anomaly scores from a trained run (higher = more anomalous), and the AUROC that says how well they separate.

Scores, each per example (per unit — e.g. per document — when the modality cuts units into several examples):

* ``nll`` — ``-log p(x)`` in bits per dimension: exact for flows on vectors, PixelCNN and GPT, the family's stated
  bound for VAE, diffusion and image flows (it is a bound on the same quantity, so it is still a score). For a
  class-conditional model the label is summed out, ``log p(x) = log Σ_y p(x | y) − log K`` (uniform class prior).
* ``complexity`` — ``nll − L(x) / D`` where ``L(x)`` is the length in bits of ``x`` under a lossless compressor (the
  modality's: PNG for images, zlib otherwise). Raw likelihoods rate simple inputs (a blank image, a constant row) as
  likely because they are easy to compress for *any* model; subtracting a generic compressor's code length removes
  that part (Serrà et al., the "S" score).
* ``ratio`` — ``nll − nll_reference``: a likelihood ratio against a second, generic run on the same data layout
  (e.g. a small local PixelCNN, or a model of broader data) that captures the low-level statistics both share
  (Schirrmeister et al.; Ren et al.).
* ``recon`` — the mean squared reconstruction error ``‖decode(encode(x)) − x‖² / D`` on the data's unit scale, for
  families whose latent code is a bottleneck (VAE, ssvae); with a conditional model the best label is used.

References:
    Nalisnick et al., "Do Deep Generative Models Know What They Don't Know?", 2019, arXiv:1810.09136.
    Serrà et al., "Input Complexity and Out-of-Distribution Detection with Likelihood-based Generative Models",
    2020, arXiv:1909.11480.
    Schirrmeister et al., "Understanding Anomaly Detection with Deep Invertible Networks through Hierarchies of
    Distributions and Features", 2020, arXiv:2006.10848.
    Ren et al., "Likelihood Ratios for Out-of-Distribution Detection", 2019, arXiv:1906.02845.
    An & Cho, "Variational Autoencoder based Anomaly Detection using Reconstruction Probability", 2015.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.apps import batched, bottleneck
from genlab.checkpoint import write_bytes
from genlab.errors import CapabilityError, ConfigError
from genlab.modalities.base import Examples
from genlab.run import Run

#: every score, in the order they are reported
SCORES = ("nll", "complexity", "ratio", "recon")


def log_likelihood(run: Run, x: Tensor, *, batch_size: int = 100) -> Tensor:
    """``log p(x)`` in nats per example (float64, CPU): the family's ``ranking_log_prob``, with the label summed out for
    class-conditional models.

    Raises:
        CapabilityError: for a family without a likelihood.
    """
    model = run.model
    if model.likelihood == "none":
        raise CapabilityError(f"family '{model.family}' has no likelihood to score with; use a flow, pixelcnn, vae, "
                              "ssvae, diffusion or gpt run")
    k = model.spec.num_classes

    def one(xb: Tensor) -> Tensor:
        xb = xb.to(model.device)
        with torch.no_grad():
            if not model.conditional:
                return model.ranking_log_prob(xb).double()
            per = [model.ranking_log_prob(xb, torch.full((len(xb),), c, dtype=torch.long,
                                                         device=model.device)).double()
                   for c in range(k)]
            return torch.logsumexp(torch.stack(per), dim=0) - math.log(k)

    return batched(one, x, batch_size)


def reconstruction_error(run: Run, x: Tensor, *, batch_size: int = 100) -> Tensor:
    """Mean squared error per example of ``decode(encode(x))`` on the data's unit scale (pixels / 255); the best
    label's for a conditional model.

    Raises:
        CapabilityError: for families without a latent space, or whose latent is invertible (no bottleneck).
    """
    model = run.model
    if not bottleneck(model, x):
        raise CapabilityError(f"family '{model.family}' maps data to a latent as large as the data (invertible), so "
                              "its reconstruction error is ~0 for every input; use the nll or complexity score")
    scale = float(model.spec.levels - 1) if model.spec.levels else 1.0

    def err(xb: Tensor, cond: Tensor | None) -> Tensor:
        rec = model.from_latent(model.to_latent(xb, cond), cond)
        return ((rec.double() - xb.double()) / scale).pow(2).flatten(1).mean(1)

    def one(xb: Tensor) -> Tensor:
        xb = xb.to(model.device)
        with torch.no_grad():
            if not model.conditional:
                return err(xb, None)
            per = [err(xb, torch.full((len(xb),), c, dtype=torch.long, device=model.device))
                   for c in range(model.spec.num_classes)]
            return torch.stack(per).min(0).values

    return batched(one, x, batch_size)


def _per_unit(values: Tensor, units: Tensor | None, n_units: int) -> Tensor:
    """Mean of per-example values within each unit."""
    if units is None:
        return values
    total = torch.zeros(n_units, dtype=torch.float64).index_add_(0, units, values.double())
    count = torch.zeros(n_units, dtype=torch.float64).index_add_(0, units, torch.ones_like(values, dtype=torch.float64))
    return total / count


def available_scores(run: Run, reference: Run | None = None) -> list[str]:
    """The scores this run can give (with ``reference``: also the likelihood ratio)."""
    names = []
    if run.model.likelihood != "none":
        names += ["nll", "complexity"]
        if reference is not None:
            names.append("ratio")
    if run.model.has_latent_space:
        names.append("recon")
    return names


def check_reference(run: Run, reference: Run) -> None:
    """A reference model must model the same kind, shape and levels of data, with the same artifacts (tokenizer).

    Raises:
        ConfigError: when it does not; CapabilityError when it has no likelihood.
    """
    a, b = run.spec, reference.spec
    if (a.kind, tuple(a.shape), a.levels, a.form) != (b.kind, tuple(b.shape), b.levels, b.form):
        raise ConfigError(f"the --reference run models {b.kind} data of shape {tuple(b.shape)} but this run models "
                          f"{a.kind} data of shape {tuple(a.shape)}; the ratio needs the same layout")
    for name in run.modality.artifact_files:
        mine = None if run.path is None or not (run.path / name).is_file() else (run.path / name).read_bytes()
        theirs = (None if reference.path is None or not (reference.path / name).is_file()
                  else (reference.path / name).read_bytes())
        if mine != theirs:
            raise ConfigError(f"the --reference run has another {name} than this run; the ratio needs both to read "
                              "the data the same way")
    if reference.model.likelihood == "none":
        raise CapabilityError(f"the --reference run (family '{reference.family}') has no likelihood")


def anomaly_scores(run: Run, examples: Examples, *, scores: Sequence[str] | None = None,
                   reference: Run | None = None, batch_size: int = 100) -> dict[str, Tensor]:
    """Anomaly scores of ``examples`` (higher = more anomalous), one value per unit (see the module docstring).

    Arguments:
        run: the model of normal data.
        examples: data in the run's representation (:meth:`~genlab.modalities.Modality.read_examples`).
        scores: which of :data:`SCORES` to compute (None: every one the run can give).
        reference: a generic model of the same data layout, for the ``ratio`` score.
        batch_size: examples per forward pass.

    Returns:
        ``name → (units,)`` float64 tensors.

    Raises:
        CapabilityError: for a score the family cannot give; ConfigError for an unknown score or bad reference.
    """
    if reference is not None:
        check_reference(run, reference)
    can = available_scores(run, reference)
    if not can:
        raise CapabilityError(f"family '{run.family}' has neither a likelihood nor an encoder, so it gives no anomaly "
                              "score; use a flow, pixelcnn, vae, ssvae, diffusion or gpt run")
    wanted = list(scores) if scores else [s for s in SCORES if s in can]
    for s in wanted:
        if s not in SCORES:
            raise ConfigError(f"unknown anomaly score '{s}'; choose from {', '.join(SCORES)}")
        if s == "ratio" and reference is None:
            raise ConfigError("the ratio score needs --reference RUN, a generic model of the same data")
        if s not in can:
            raise CapabilityError(f"family '{run.family}' cannot give the {s} score (it can give: {', '.join(can)})")
    if scores is None and "recon" in wanted and not bottleneck(run.model, examples.x):
        wanted.remove("recon")  # invertible latents reconstruct everything; not asked for, so left out
    x, units, n_units = examples.x, examples.units, len(examples.names)
    d = run.spec.dims
    out: dict[str, Tensor] = {}
    if any(s in wanted for s in ("nll", "complexity", "ratio")):
        bpd = -_per_unit(log_likelihood(run, x, batch_size=batch_size), units, n_units) / (d * math.log(2))
        if "nll" in wanted:
            out["nll"] = bpd
        if "complexity" in wanted:
            bits = _per_unit(run.modality.complexity_bits(run, x), units, n_units)
            out["complexity"] = bpd - bits / d
        if "ratio" in wanted:
            assert reference is not None
            ref = -_per_unit(log_likelihood(reference, x, batch_size=batch_size), units, n_units) / (d * math.log(2))
            out["ratio"] = bpd - ref
    if "recon" in wanted:
        out["recon"] = _per_unit(reconstruction_error(run, x, batch_size=batch_size), units, n_units)
    return {s: out[s] for s in SCORES if s in out}


def auroc(normal: Tensor | np.ndarray, anomalous: Tensor | np.ndarray) -> float:
    """Area under the ROC curve of scores where higher means anomalous: ``P(s_anomalous > s_normal)`` plus half the
    ties (the Mann–Whitney U statistic over ``n_normal · n_anomalous``), computed from average ranks.

    Raises:
        ValueError: unless both groups are non-empty and every score is finite.
    """
    a = np.asarray(normal, dtype=np.float64).ravel()
    b = np.asarray(anomalous, dtype=np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError("AUROC needs at least one normal and one anomalous score")
    both = np.concatenate([a, b])
    if not np.isfinite(both).all():
        raise ValueError("AUROC needs finite scores")
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0  # average 1-based rank of each distinct value
    ranks = avg_rank[inverse]
    u = ranks[len(a) :].sum() - len(b) * (len(b) + 1) / 2.0
    return float(u / (len(a) * len(b)))


def anomaly(run: Run, data: str | Path | None = None, out: str | Path | None = None, *,
            anomalies: str | Path | None = None, scores: Sequence[str] | None = None,
            reference: Run | None = None, batch_size: int = 100) -> dict[str, Any]:
    """``genlab anomaly``: score the data at ``data`` (the run's test split when None) and write a CSV.

    Arguments:
        run: the model of normal data.
        data: data to score, read by the run's modality (a folder or file of images, text files, …).
        out: CSV to write (``name,set,<score>…``; None writes nothing).
        anomalies: optional data known to be anomalous: also scored, and the AUROC of each score reported.
        scores: which scores (None: all the run gives).
        reference: generic model for the ``ratio`` score.
        batch_size: examples per forward pass.

    Returns:
        ``{"n": units scored, "scores": names, "mean": {score: mean}, "auroc": {score: AUROC} (with anomalies),
        "out": path}``.
    """
    if out is not None and not Path(out).parent.exists():
        raise ConfigError(f"folder {Path(out).parent} does not exist; create it or choose another --out")
    if out is not None and Path(out).suffix.lower() != ".csv":
        raise ConfigError(f"--out must end in .csv, got {Path(out).name}")
    mod = run.modality
    normal = mod.read_examples(run, None if data is None else Path(data))
    sets = [("normal" if anomalies is not None else "", normal)]
    if anomalies is not None:
        sets.append(("anomaly", mod.read_examples(run, Path(anomalies))))
    results = [(name, ex, anomaly_scores(run, ex, scores=scores, reference=reference, batch_size=batch_size))
               for name, ex in sets]
    names = list(results[0][2])
    report: dict[str, Any] = {"n": sum(len(ex.names) for _, ex, _ in results), "scores": names,
                              "mean": {s: float(torch.cat([r[s] for _, _, r in results]).mean()) for s in names}}
    if anomalies is not None:
        report["auroc"] = {s: auroc(results[0][2][s], results[1][2][s]) for s in names}
    if out is not None:
        buf = io.StringIO()
        buf.write(",".join(["name", *(["set"] if anomalies is not None else []), *names]) + "\n")
        for set_name, ex, res in results:
            for i, name in enumerate(ex.names):
                cells = [_csv_cell(name), *([set_name] if anomalies is not None else [])]
                buf.write(",".join([*cells, *(f"{float(res[s][i]):.6g}" for s in names)]) + "\n")
        write_bytes(Path(out), buf.getvalue().encode("utf-8"))
        report["out"] = str(out)
    return report


def _csv_cell(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text
