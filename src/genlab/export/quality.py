"""Quality of a model's samples, the same way for PyTorch and for its exported fp32 and int8 graphs, and the bounds
int8 must keep.

* images: KID and FID of the samples against the test split on a feature network that serves the data (the
  shipped classifier for mnist/digits, else Inception, else raw pixels — said in the result);
* vectors: KID and FID on the coordinates (as the vector modality evaluates);
* tokens: perplexity of the validation windows (every token, start token given);
* tables: the *table distance* ``1 - quality`` of the decoded samples against the test split, where quality is the
  tabular modality's SDMetrics-style fidelity score (mean of the column-shape and column-pair-trend scores,
  :func:`genlab.metrics.tabular.quality`): 0 for a sample with the test split's marginals and pairwise trends;
* networks whose output is a categorical prediction of held-out data that is not a plain next-token model (the
  sequence VAE's decoder and the music VAE's cell decoder at the encoder's mean of test data, grid diffusion's
  denoiser on masked test grids): the perplexity ``exp(mean NLL)`` of that prediction, through the exporter's
  :meth:`~genlab.export.exporters.Exporter.held_out_nll`.

Samples of the variants being compared are drawn with the same seed, so the ONNX fp32 and int8 samples start from
the same noise and their difference measures the quantization, not sampling noise.

Bounds (issue 17): token models int8 perplexity at most +2 %; convolutional families int8 KID at most +10 %; table
models int8 table distance at most +10 %.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from genlab.errors import CapabilityError
from genlab.modalities.base import Splits
from genlab.run import Run

#: relative loss int8 may cost: perplexity for token models, KID for the others
BOUNDS = {"perplexity": 0.02, "kid": 0.10, "table_distance": 0.10}

#: ``fn(n, seed, labels) → samples`` of one variant (PyTorch, ONNX fp32, ONNX int8)
Sampler = Callable[[int, int, np.ndarray | None], np.ndarray]
#: ``fn(graph name, inputs) → outputs`` of one variant's graphs (ONNX Runtime, or the PyTorch adapter modules)
GraphCall = Callable[[str, Mapping[str, np.ndarray]], list[np.ndarray]]


def metric_of(form: str) -> str:
    """The quality metric the int8 bound is stated on for data of ``form``."""
    return {"tokens": "perplexity", "table": "table_distance"}.get(form, "kid")


def sample_labels(run: Run, n: int) -> np.ndarray | None:
    """Labels ``i mod K`` for a conditional model (every class equally often), None otherwise."""
    return (np.arange(n) % run.spec.num_classes).astype(np.int64) if run.model.conditional else None


def draw(sampler: Sampler, n: int, seed: int, labels: np.ndarray | None, batch: int = 256) -> np.ndarray:
    """``n`` samples in batches (batch ``b`` with seed ``seed + b``)."""
    out = []
    for b, lo in enumerate(range(0, n, batch)):
        y = None if labels is None else labels[lo : lo + batch]
        out.append(sampler(min(batch, n - lo), seed + b, y))
    return np.concatenate(out)


def features(run: Run, splits: Splits) -> tuple[str, Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """The feature space samples are compared in: ``(name, fn(samples) → features, test features)``."""
    test = splits.test
    if run.spec.form == "vector":
        return "coordinates", lambda s: np.asarray(s, dtype=np.float64), test.x.double().numpy()
    if run.spec.form != "image":
        raise CapabilityError(f"no sample-based quality measure for {run.spec.form} data")
    from genlab.metrics.features import available_features, feature_net, reference_features

    names, _ = available_features(run.data, test.spec, ("classifier", "inception"))
    if names:
        net = feature_net(names[0], run.data, test.spec)
        real, _ = reference_features(net, test.x)
        return names[0], lambda s: net(torch.from_numpy(np.ascontiguousarray(s)))[0].numpy(), real.numpy()

    def pixels(s: np.ndarray) -> np.ndarray:
        return np.asarray(s, dtype=np.float64).reshape(len(s), -1) / 255.0

    return "pixels", pixels, pixels(test.x.numpy())


def sample_quality(run: Run, splits: Splits, samplers: Mapping[str, Sampler], n: int, seed: int = 0
                   ) -> dict[str, Any]:
    """KID (mean ± std over subsets) and FID of each variant's samples against the test split (tables: the table
    distance, :func:`table_quality`), and, for every variant after the first, the mean absolute difference of its
    samples from the first's (same noise).

    Returns:
        ``{"features": name, "n_samples": n, <variant>: {"kid", "kid_std", "fid"[, "mean_abs_diff"]}}``.
    """
    from genlab.metrics.distribution import fid, kid

    if run.spec.form == "table":
        return table_quality(run, splits, samplers, n, seed)

    name, feats, real = features(run, splits)
    labels = sample_labels(run, n)
    out: dict[str, Any] = {"features": name, "n_samples": n}
    size = max(2, min(1000, len(real) // 2, n // 2))

    def score(s: np.ndarray) -> dict[str, Any]:
        f = feats(s)
        k, k_std = kid(real, f, 100, size)
        return {"kid": k, "kid_std": k_std, "fid": fid(real, f)}

    return {**out, **score_variants(samplers, n, seed, labels, score)}


def score_variants(samplers: Mapping[str, Sampler], n: int, seed: int, labels: np.ndarray | None,
                   score: Callable[[np.ndarray], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``score`` of each variant's ``n`` samples (same seed, same labels), and for every variant after the first the
    mean absolute difference of its samples from the first's (same noise: what quantization moved)."""
    out: dict[str, dict[str, Any]] = {}
    first: np.ndarray | None = None
    for variant, sampler in samplers.items():
        s = draw(sampler, n, seed, labels)
        entry = score(s)
        if first is None:
            first = s
        else:
            entry["mean_abs_diff"] = float(np.abs(s.astype(np.float64) - first.astype(np.float64)).mean())
        out[variant] = entry
    return out


def table_quality(run: Run, splits: Splits, samplers: Mapping[str, Sampler], n: int, seed: int = 0
                  ) -> dict[str, Any]:
    """The table distance ``1 - quality`` (:func:`genlab.metrics.tabular.quality`) of each variant's decoded samples
    against the test split (classes of a conditional model drawn as it samples them, so from the same seed the same
    for each variant), with the quality's two parts, and for every variant after the first the mean absolute
    difference of its rows from the first's (same noise).

    Returns:
        ``{"features": "decoded columns", "n_samples": n, <variant>: {"table_distance", "quality", "shapes",
        "trends"[, "mean_abs_diff"]}}``.
    """
    from genlab.data.tables import TableDataset
    from genlab.metrics.tabular import quality

    codec = run.artifacts["table"]
    test = splits.test
    if not isinstance(test, TableDataset) or test.frame is None:
        raise CapabilityError("the test split has no decoded rows to compare table samples with")
    real = test.frame
    labels = None  # a conditional model draws its classes from the target's frequencies, the same for each variant

    def score(s: np.ndarray) -> dict[str, Any]:
        q = quality(real, codec.decode(s), codec.columns)
        return {"table_distance": 1.0 - q["quality"], "quality": q["quality"], "shapes": q["shapes"],
                "trends": q["trends"]}

    return {"features": "decoded columns", "n_samples": n, **score_variants(samplers, n, seed, labels, score)}


def token_windows(splits: Splits, max_windows: int = 64) -> np.ndarray:
    """The first ``max_windows`` validation windows ``(N, T)`` int64."""
    return splits.test.head(max_windows).x.numpy().astype(np.int64)


def perplexity(logits_of: Callable[[np.ndarray], np.ndarray], windows: np.ndarray, bos: int,
               batch: int = 16) -> dict[str, float]:
    """Perplexity ``exp(mean NLL)`` of every token of ``windows (N, T)``, each predicted from ``<s> x_<t``.

    Arguments:
        logits_of: ``fn(inputs (B, T)) → logits (B, T, V)``.
        windows: token windows.
        bos: the start token.
    """
    total, count = 0.0, 0
    for lo in range(0, len(windows), batch):
        x = windows[lo : lo + batch]
        inputs = np.concatenate([np.full((len(x), 1), bos, dtype=np.int64), x[:, :-1]], axis=1)
        nll = categorical_nll(logits_of(inputs), x)
        total += float(nll.sum())
        count += nll.size
    return perplexity_of(total, count)


def categorical_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``−log softmax(logits)[target]`` in nats, shaped like ``targets`` (logits: the targets' shape + classes)."""
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None].astype(np.int64), axis=-1)[..., 0]


def perplexity_of(total: float, count: int) -> dict[str, float]:
    """``{"nll", "perplexity", "tokens"}`` of a summed NLL over ``count`` predictions."""
    mean = total / max(count, 1)
    return {"nll": mean, "perplexity": float(np.exp(mean)), "tokens": count}


def onnx_call(exported: Any) -> GraphCall:
    """The graphs of an exported folder opened with :func:`genlab.export.runtime.load`."""
    return lambda name, inputs: list(exported.runtime.graphs[name](**inputs))


def torch_call(specs: Sequence[Any]) -> GraphCall:
    """The PyTorch adapter modules of an exporter's graph specs, called as their graphs are."""
    modules = {s.name: (s.module, s.inputs) for s in specs}

    def call(name: str, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        module, names = modules[name]
        with torch.no_grad():
            out = module(*(torch.from_numpy(np.asarray(inputs[k])) for k in names if k in inputs))
        return [o.float().numpy() for o in (out if isinstance(out, tuple) else (out,))]

    return call


def torch_logits(run: Run) -> Callable[[np.ndarray], np.ndarray]:
    """``fn(inputs) → logits`` of the PyTorch model (token families)."""

    model: Any = run.model

    def fn(ids: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model.net(torch.from_numpy(ids).to(model.device))
        return (out[0] if isinstance(out, tuple) else out).float().cpu().numpy()  # rnn: (logits, state)

    return fn


def within_bound(metric: str, reference: float, quantized: float) -> tuple[bool, float]:
    """Whether the int8 value keeps the bound, and its relative change ``(q − r) / |r|``."""
    rel = (quantized - reference) / max(abs(reference), 1e-12)
    return rel <= BOUNDS[metric], rel
