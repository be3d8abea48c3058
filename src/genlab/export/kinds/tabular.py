"""Exported table models without torch: the sample writer (CSV, TSV, Parquet in the training table's columns,
dtypes and categories, decoded with the run's own ``table.json``) and the numpy sampling loops of the ``table``
form around the exported graphs.

Each runtime reproduces its family's PyTorch ``sample`` on table rows (same distribution; numpy's generator, so not
the same draws):

* ``table-vae`` (TVAE): ``z`` from the (class) prior → decoder → numbers ``μ + σ ε``, one draw from each one-hot
  block's softmax;
* ``table-gan`` (CTGAN): ``z`` and a conditional vector drawn as CTGAN samples it (a block uniformly, its level by
  its training frequency) → generator → a Gumbel-max draw from each block's logits;
* ``table-flow``: the inverse of ``T · ε`` → every lifted block hardened to its argmax;
* ``table-diffusion`` (TabDDPM): the numpy Gaussian sampler steps the numbers, ancestral multinomial diffusion steps
  the one-hot blocks at the same timesteps, then blocks are hardened.

A conditional model writes its class into the label block; without ``--label`` classes are drawn from the
training frequencies of the target (as :meth:`genlab.core.GenerativeModel.check_cond` does for tables).

References:
    Xu et al., "Modeling Tabular Data using Conditional GAN" (CTGAN, TVAE), 2019, arXiv:1907.00503.
    Kotelnikov et al., "TabDDPM: Modelling Tabular Data with Diffusion Models", 2023, arXiv:2209.15421.
    Hoogeboom et al., "Argmax Flows and Multinomial Diffusion", 2021, arXiv:2102.05379.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genlab.data.table_codec import SAMPLE_FORMATS, BlockLayout, TableCodec, table_bytes
from genlab.errors import CapabilityError, DataError
from genlab.export.numpy_ops import NumpySampler, gumbel_onehot, log_softmax, multinomial_posterior, timesteps
from genlab.export.outputs import Writer, register_writer, write_bytes
from genlab.export.runtime import (
    DiffusionOptions,
    DiffusionRuntime,
    FlowOptions,
    FlowRuntime,
    Graph,
    Runtime,
    _labels_or_dummy,
    register_runtime,
)

if TYPE_CHECKING:
    import pandas as pd

#: the run's fitted column transforms, copied into the exported folder
TABLE_FILE = "table.json"


def load_codec(folder: Path) -> TableCodec:
    """The column transforms of an exported table model (the run's own ``table.json``).

    Raises:
        DataError: when the folder has none or it cannot be read.
    """
    path = folder / TABLE_FILE
    if not path.is_file():
        raise DataError(f"{folder} has no {TABLE_FILE}; exported table models need the run's column transforms")
    try:
        return TableCodec.from_json(path.read_text(encoding="utf-8"))
    except Exception as e:  # a damaged file: say which
        raise DataError(f"cannot read {path} ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


@register_writer("tabular")
class TableWriter(Writer):
    """Table rows (``table`` form) or token rows (``tokens`` form) → CSV, TSV or Parquet, as the tabular modality's
    ``write_samples`` writes them."""

    formats = SAMPLE_FORMATS
    default_samples = 1000

    def __init__(self, folder: Path, manifest: Mapping[str, Any]) -> None:
        super().__init__(folder, manifest)
        self.codec = load_codec(folder)

    def frame(self, samples: np.ndarray) -> pd.DataFrame:
        """Samples in the model's form → a DataFrame in the training table's columns and dtypes."""
        if self.manifest["form"] == "tokens":
            return self.codec.decode_tokens(samples)
        return self.codec.decode(samples)

    def write(self, samples: np.ndarray, path: Path, fmt: str, labels: np.ndarray | None,
              options: Mapping[str, Any]) -> Path:
        return write_bytes(path, table_bytes(self.frame(samples), fmt))


class TableRuntime(Runtime):
    """Sampling loops of ``table`` rows: the block layout, the class prior and the finishing of rows."""

    def __init__(self, manifest: Mapping[str, Any], graphs: Mapping[str, Graph], folder: Path) -> None:
        super().__init__(manifest, graphs, folder)
        self.layout = BlockLayout.from_info(self.spec["info"])
        self.num = self.layout.num_positions

    def labels(self, n: int, label: Any, rng: np.random.Generator) -> np.ndarray | None:
        prior = self.spec["info"].get("class_prior")
        if self.conditional and label is None and prior is not None:  # the target's training frequencies
            p = np.asarray(prior, dtype=np.float64)
            return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int64)
        return super().labels(n, label, rng)

    def finish(self, x: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """Rows with the label block set to the class (conditional models), as ``float32``."""
        return self.layout.label_array(x.astype(np.float32), labels if self.conditional else None)


@register_runtime("table-vae")
class TableVAERuntime(TableRuntime):
    """TVAE: the decoder's means and logits, numbers ``μ + e^s ε``, categories drawn from their softmax."""

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        eps = rng.standard_normal((n, int(self.model["latent_dim"])), dtype=np.float32)
        out, log_scale = self.graphs["decoder"](eps=eps, label=_labels_or_dummy(labels, n))
        return self.finish(self.draw(out, log_scale, rng), labels)

    def draw(self, out: np.ndarray, log_scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Rows from the decoder's parameters ``out (n, D)`` and log-scales ``(n, n_num)``
        (:func:`genlab.distributions.sample_mixed`)."""
        x = out.copy()
        if self.num:
            eps = rng.standard_normal((len(out), len(self.num)), dtype=np.float32)
            x[:, self.num] = out[:, self.num] + np.exp(log_scale) * eps
        for b in self.layout.cats:
            x[:, b.offset : b.offset + b.width] = gumbel_onehot(log_softmax(out[:, b.offset : b.offset + b.width]),
                                                                rng)
        return x


@register_runtime("table-gan")
class TableGANRuntime(TableRuntime):
    """CTGAN: the generator on ``z`` and a sampled conditional vector, a Gumbel-max draw per one-hot block."""

    def condvec(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Conditional vectors ``(n, cond_dim)`` as CTGAN samples them (``GAN._draw_condvec``)."""
        blocks = [self.layout.blocks[i] for i in self.model["cond_blocks"]]
        c = np.zeros((n, sum(b.width for b in blocks)), dtype=np.float32)
        if not blocks:
            return c
        which = rng.integers(0, len(blocks), n)
        off = 0
        for j, b in enumerate(blocks):
            f = np.asarray(b.freq or [1.0 / b.width] * b.width, dtype=np.float64)
            level = rng.choice(b.width, size=n, p=f / f.sum())
            rows = which == j
            c[rows, off + level[rows]] = 1.0
            off += b.width
        return c

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        z = rng.standard_normal((n, int(self.model["latent_dim"])), dtype=np.float32)
        raw = self.graphs["generator"](z=z, cond=self.condvec(n, rng), label=_labels_or_dummy(labels, n))[0]
        x = raw.copy()
        for b in self.layout.cats:  # Gumbel-max: a draw from each block's softmax
            x[:, b.offset : b.offset + b.width] = gumbel_onehot(raw[:, b.offset : b.offset + b.width], rng)
        return self.finish(x, labels)


@register_runtime("table-flow")
class TableFlowRuntime(TableRuntime, FlowRuntime):
    """Flows on tables: the exported inverse of ``T · ε``, each lifted block hardened to its argmax."""

    options_cls = FlowOptions

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        v = self.inverse(n, labels, rng, options.get("temperature", 1.0))
        return self.finish(self.layout.harden_array(v.astype(np.float32)), labels)


@register_runtime("table-diffusion")
class TableDiffusionRuntime(DiffusionRuntime, TableRuntime):
    """TabDDPM: Gaussian reverse diffusion of the numbers and multinomial reverse diffusion of the one-hot blocks
    (``Diffusion._table_sample``), one denoiser call per step (classifier-free guidance as for images)."""

    options_cls = DiffusionOptions

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        o = DiffusionOptions(**{k: v for k, v in options.items() if k in DiffusionOptions.__dataclass_fields__})
        if o.guidance != 1.0 and not self.conditional:
            raise CapabilityError("--guidance needs a class-conditional diffusion model; this one is unconditional")
        num, cats, sch = self.num, self.layout.cats, self.schedule
        x = np.zeros((n, self.layout.dims), dtype=np.float32)
        x[:, num] = rng.standard_normal((n, len(num)), dtype=np.float32)
        for b in cats:  # the multinomial chain ends in the uniform distribution
            x[:, b.offset : b.offset + b.width] = gumbel_onehot(np.zeros((n, b.width)), rng)
        sampler = NumpySampler(sch, o.sampler, o.eta)
        ts = timesteps(sch, o.sampler, o.steps)
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            out = self.net(x, t, labels, o.guidance)
            x0, _ = sch.predictions(out[:, num], x[:, num], t, self.model["prediction"])
            ab = sch.ab(t)
            x0 = np.clip(x0, -8.0, 8.0)  # beyond the Gaussianised range; keeps ε̂ consistent with x_t
            eps = (x[:, num] - np.float32(math.sqrt(ab)) * x0) / np.float32(math.sqrt(1 - ab))
            x_prev = x.copy()
            x_prev[:, num] = sampler.step(x0, eps, t, t_prev, x[:, num], rng)
            for b in cats:  # ancestral step x_s ~ p(x_s | x_t) with x̂_0 = softmax(out[block])
                sl = slice(b.offset, b.offset + b.width)
                log_p = multinomial_posterior(x[:, sl], log_softmax(out[:, sl]), ab, sch.ab(t_prev))
                x_prev[:, sl] = gumbel_onehot(log_p, rng)
            x = x_prev
        return self.finish(self.layout.harden_array(x), labels)
