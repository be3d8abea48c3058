"""One exporter per family: which graphs make up its sampling network, their example and parity inputs, the
sampling config the torch-free runtime needs, and calibration inputs for static int8 quantization.

A family (or a modality's network) becomes exportable by registering an :class:`Exporter` with
:func:`register_exporter` — wrapping its network in an export-only adapter (:mod:`genlab.export.adapters`) — and,
when its sampling loop is new, a runtime (:func:`genlab.export.runtime.register_runtime`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import logging
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from genlab.core import Registry
from genlab.errors import CapabilityError
from genlab.export import adapters
from genlab.run import Run

Quantization = Literal["dynamic", "static"]


@dataclass
class GraphSpec:
    """One graph to export.

    Arguments:
        name: graph name (file ``<name>.onnx``).
        module: the export-only module; ``module(*args)`` is what the graph computes.
        args: example inputs to trace with (dynamic sizes at least 2, so the tracer does not fix them).
        inputs: input names, in ``forward``'s order (they are also its argument names).
        outputs: output names.
        dynamic: per input, ``axis → (dim name, min, max)``; equal names are the same size.
        quantization: how int8 quantization treats it.
        checks: further fixed inputs the exported graph must reproduce (other sizes than ``args``).
    """

    name: str
    module: nn.Module
    args: tuple[Tensor, ...]
    inputs: list[str]
    outputs: list[str]
    dynamic: dict[str, dict[int, tuple[str, int, int]]]
    quantization: Quantization
    checks: list[tuple[Tensor, ...]] = field(default_factory=list)


class Exporter(ABC):
    """How one family's sampling network is exported (one instance per family, registered by name)."""

    family: ClassVar[str] = ""
    #: the runtime of :mod:`genlab.export.runtime` that samples from the graphs
    runtime: ClassVar[str] = ""
    #: the data forms whose sampling network this exporter knows (a family may model more)
    forms: ClassVar[tuple[str, ...]] = ("image",)

    def supports(self, run: Run) -> None:  # noqa: B027  (a hook; most families export as they are)
        """Raise :class:`CapabilityError` for a model whose options cannot be exported (default: all can)."""

    @abstractmethod
    def graphs(self, run: Run) -> list[GraphSpec]:
        """The graphs of the run's sampling network."""

    @abstractmethod
    def config(self, run: Run) -> dict[str, Any]:
        """The JSON-able sampling config the runtime reads (``export.json``'s ``model``)."""

    def calibration(self, run: Run, graph: GraphSpec, n: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
        """Batches of ``n`` inputs in all of ``graph`` as sampling feeds it (static quantization)."""
        raise CapabilityError(f"{self.family} graphs need no calibration")

    def held_out_nll(self, run: Run, test: Any, n: int, seed: int, call: Any) -> dict[str, float] | None:
        """The perplexity of held-out data through the graphs (``call(graph, inputs) → outputs``,
        :data:`genlab.export.quality.GraphCall`) for networks scored that way — :func:`quality.perplexity_of` of
        the first ``n`` examples of the split ``test``; None (the default) scores the run by its data form's
        metric."""
        return None


EXPORTERS: Registry[Exporter] = Registry("exporter")
#: exporters of one family's network on one data form (a modality's own network), by (family, form)
FORM_EXPORTERS: dict[tuple[str, str], Exporter] = {}


def register_exporter(family: str, form: str | None = None) -> Any:
    """Class decorator: register one instance of an :class:`Exporter` for ``family`` (on data ``form`` only, e.g. a
    modality's own network for the family, in :data:`FORM_EXPORTERS`)."""

    def deco(cls: type[Exporter]) -> type[Exporter]:
        cls.family = family
        if form is None:
            EXPORTERS.register(family)(cls())
            return cls
        cls.forms = (form,)
        if (family, form) in FORM_EXPORTERS:
            raise ValueError(f"an exporter for {family} on {form} data is already registered")
        FORM_EXPORTERS[(family, form)] = cls()
        return cls

    return deco


def exporter_for(run: Run) -> Exporter:
    """The exporter of the run's family on its data form: one in :data:`FORM_EXPORTERS` (a modality's own network,
    maybe from ``genlab.export.kinds.<kind>_graphs``), else the family's.

    Raises:
        CapabilityError: for a family without one, or a data form or kind its exporter does not know.
    """
    from genlab.export.outputs import load_kind, writer_class

    load_kind(run.modality.kind, graphs=True)
    key = (run.family, run.spec.form)
    if key not in FORM_EXPORTERS and run.family not in EXPORTERS:
        families = sorted({*EXPORTERS, *(f for f, _ in FORM_EXPORTERS)})
        raise CapabilityError(f"family '{run.family}' cannot be exported to ONNX yet; exportable families: "
                              f"{', '.join(families)}")
    exporter = FORM_EXPORTERS[key] if key in FORM_EXPORTERS else EXPORTERS[run.family]
    if run.spec.form not in exporter.forms or writer_class(run.modality.kind) is None:
        raise CapabilityError(f"a {run.family} run on {run.modality.kind} data ({run.spec.form} form) cannot be "
                              f"exported to ONNX yet; exported {run.family} runs model "
                              f"{', '.join(exporter.forms)} data")
    exporter.supports(run)
    return exporter


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _labels(run: Run, n: int, g: torch.Generator) -> Tensor:
    return torch.randint(0, max(1, run.spec.num_classes), (n,), generator=g)


def _batches(n: int, size: int = 32) -> list[int]:
    return [min(size, n - lo) for lo in range(0, n, size)]


def _np(batch: dict[str, Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in batch.items()}


BATCH = ("batch", 1, 1 << 16)


@register_exporter("vae")
class VAEExporter(Exporter):
    """The VAE's decoder: ``z → decoder parameters``; pixels (or a grid's cells) are decoded in numpy, and a
    per-class prior (``--class-prior``) goes into the config."""

    runtime = "latent"
    graph_name = "decoder"
    forms: ClassVar[tuple[str, ...]] = ("image", "grid")

    def _modules(self, run: Run) -> tuple[nn.Module, nn.Module | None, bool]:
        model: Any = run.model
        return model.decoder, model.emb_dec if model.conditional else None, False

    def _latent(self, run: Run) -> int:
        return int(run.model.config.latent_dim)

    def graphs(self, run: Run) -> list[GraphSpec]:
        model: Any = run.model
        cond = model.conditional
        d = self._latent(run)
        g = _gen(0)
        inputs = ["z", "label"] if cond else ["z"]

        def args(n: int) -> tuple[Tensor, ...]:
            z = torch.randn(n, d, generator=g)
            return (z, _labels(run, n, g)) if cond else (z,)

        dyn = {name: {0: BATCH} for name in inputs}
        return [GraphSpec(self.graph_name, self._decoder(run), args(3), inputs, ["out"], dyn, "static",
                          [args(5), args(2)])]

    def _decoder(self, run: Run) -> nn.Module:
        return adapters.LatentDecoder(*self._modules(run))

    def config(self, run: Run) -> dict[str, Any]:
        model: Any = run.model
        cfg = model.config
        out = {"graph": self.graph_name, "latent_dim": self._latent(run), "conditional": model.conditional,
               "pixels": "categorical" if run.spec.form == "grid" else cfg.likelihood, "sample_mode": cfg.sample_mode}
        if model.prior is not None:  # per-class (μ_y, log σ²_y), as VAE.prior_params clamps them
            mu, logvar = model.prior.weight.detach().float().cpu().chunk(2, dim=1)
            out["prior"] = {"mean": mu.tolist(), "logvar": logvar.clamp(-12.0, 8.0).tolist()}
        return out

    def calibration(self, run: Run, graph: GraphSpec, n: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
        g = _gen(seed)
        for size in _batches(n):
            batch = {"z": torch.randn(size, self._latent(run), generator=g), "label": _labels(run, size, g)}
            yield {k: v for k, v in _np(batch).items() if k in graph.inputs}

    def held_out_nll(self, run: Run, test: Any, n: int, seed: int, call: Any) -> dict[str, float] | None:
        """Grids: the NLL of every test cell under the decoder's categorical at the encoder's posterior mean (the
        reconstruction term of the bound, with the PyTorch encoder); images are scored by their samples."""
        if run.spec.form != "grid":
            return None
        from genlab.export.quality import categorical_nll, perplexity_of

        model: Any = run.model
        x = test.head(n).x
        y = test.head(n).y if model.conditional else None
        total, count = 0.0, 0
        for lo in range(0, len(x), 64):
            xb = x[lo : lo + 64]
            yb = None if y is None else y[lo : lo + 64]
            with torch.no_grad():
                mu, _ = model.encode(xb, yb)
            label = (yb if yb is not None else torch.zeros(len(xb), dtype=torch.long)).numpy()
            nll = categorical_nll(call(self.graph_name, {"z": mu.numpy(), "label": label})[0], xb.numpy())
            total, count = total + float(nll.sum()), count + nll.size
        return perplexity_of(total, count)


@register_exporter("vae", "tokens")
class SeqVAEExporter(Exporter):
    """The sequence VAE's decoder (molecules, music events): ``start`` maps a latent to the GRU's first state and
    ``step`` reads tokens given the latent and the state; the token loop runs in numpy."""

    runtime = "seqvae"

    def graphs(self, run: Run) -> list[GraphSpec]:
        model: Any = run.model
        dec, cfg = model.seq_decoder, model.config
        block, vocab = run.spec.shape[0], run.spec.levels
        g = _gen(0)

        def z(n: int) -> Tensor:
            return torch.randn(n, cfg.latent_dim, generator=g)

        def step_args(n: int, t: int) -> tuple[Tensor, ...]:
            return (torch.randint(0, vocab, (n, t), generator=g), z(n),
                    torch.randn(cfg.seq_layers, n, cfg.seq_decoder, generator=g) * 0.5)

        return [
            GraphSpec("start", adapters.SeqVAEStart(dec), (z(3),), ["z"], ["h"], {"z": {0: BATCH}}, "dynamic",
                      [(z(1),), (z(5),)]),
            GraphSpec("step", adapters.SeqVAEStep(dec), step_args(2, 3), ["ids", "z", "h"], ["logits", "h_out"],
                      {"ids": {0: BATCH, 1: ("new", 1, max(block, 2))}, "z": {0: BATCH}, "h": {1: BATCH}},
                      "dynamic", [step_args(3, 1), step_args(1, block)]),
        ]

    def config(self, run: Run) -> dict[str, Any]:
        cfg = run.model.config
        return {"latent_dim": int(cfg.latent_dim), "block_size": run.spec.shape[0], "sample_mode": cfg.sample_mode,
                "eot_id": 0, "conditional": False}

    def held_out_nll(self, run: Run, test: Any, n: int, seed: int, call: Any) -> dict[str, float] | None:
        """The teacher-forced NLL of every test token given the encoder's posterior mean (the reconstruction term
        of the bound, with the PyTorch encoder)."""
        from genlab.export.quality import categorical_nll, perplexity_of

        model: Any = run.model
        x = test.head(n).x
        total, count = 0.0, 0
        for lo in range(0, len(x), 64):
            xb = x[lo : lo + 64]
            with torch.no_grad():
                mu = model.encode(xb)[0].numpy()
            inputs = torch.cat([torch.zeros_like(xb[:, :1]), xb[:, :-1]], dim=1).numpy()  # <s> = <|endoftext|>
            (h,) = call("start", {"z": mu})
            nll = categorical_nll(call("step", {"ids": inputs, "z": mu, "h": h})[0], xb.numpy())
            total, count = total + float(nll.sum()), count + nll.size
        return perplexity_of(total, count)


@register_exporter("ssvae")
class SSVAEExporter(VAEExporter):
    """The semi-supervised VAE's (M2) decoder ``p(x | y, z)``: ``(z, label) → decoder parameters``, the label as a
    one-hot vector beside ``z``; pixels are decoded in numpy as the VAE's."""

    forms = ("image",)

    def _decoder(self, run: Run) -> nn.Module:
        model: Any = run.model
        return adapters.OneHotDecoder(model.decoder, run.spec.num_classes)

    def config(self, run: Run) -> dict[str, Any]:
        cfg = run.model.config
        return {"graph": self.graph_name, "latent_dim": self._latent(run), "conditional": True,
                "pixels": cfg.likelihood, "sample_mode": cfg.sample_mode}


@register_exporter("gan")
class GANExporter(VAEExporter):
    """The GAN's (EMA) generator: ``z → tanh image``."""

    runtime = "latent"
    graph_name = "generator"

    def _modules(self, run: Run) -> tuple[nn.Module, nn.Module | None, bool]:
        model: Any = run.model
        return model.generator, model.g_emb if model.conditional else None, True

    def _latent(self, run: Run) -> int:
        return int(run.model.config.z_dim)

    def config(self, run: Run) -> dict[str, Any]:
        return {"graph": self.graph_name, "latent_dim": self._latent(run), "conditional": run.model.conditional,
                "pixels": "model"}


@register_exporter("flow")
class FlowExporter(Exporter):
    """The flow's inverse: ``(ε, temperature) → data``."""

    runtime = "flow"
    forms = ("image", "vector")

    def graphs(self, run: Run) -> list[GraphSpec]:
        cond = run.model.conditional
        d = run.spec.dims
        g = _gen(0)
        inputs = ["eps", "temperature", "label"] if cond else ["eps", "temperature"]

        def args(n: int, t: float) -> tuple[Tensor, ...]:
            base = (torch.randn(n, d, generator=g), torch.tensor([t]))
            return (*base, _labels(run, n, g)) if cond else base

        dyn = {name: {0: BATCH} for name in inputs if name != "temperature"}
        mode: Quantization = "static" if run.spec.form == "image" else "dynamic"
        return [GraphSpec("inverse", adapters.FlowInverse(run.model), args(3, 1.0), inputs, ["x"], dyn, mode,
                          [args(5, 1.0), args(2, 0.7)])]

    def config(self, run: Run) -> dict[str, Any]:
        model: Any = run.model
        return {"latent_dims": run.spec.dims, "conditional": model.conditional,
                "sampling": dataclasses.asdict(type(model).sample_options_cls())}

    def calibration(self, run: Run, graph: GraphSpec, n: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
        g = _gen(seed)
        for size in _batches(n):
            batch = {"eps": torch.randn(size, run.spec.dims, generator=g), "temperature": torch.tensor([1.0]),
                     "label": _labels(run, size, g)}
            yield {k: v for k, v in _np(batch).items() if k in graph.inputs}


@register_exporter("diffusion")
class DiffusionExporter(Exporter):
    """One U-Net evaluation ``(x_t, t, label) → output``; the sampler loop runs in numpy."""

    runtime = "diffusion"

    def graphs(self, run: Run) -> list[GraphSpec]:
        model: Any = run.model
        cond = model.conditional
        T = model.config.num_timesteps
        g = _gen(0)
        inputs = ["x", "t", "label"] if cond else ["x", "t"]

        def args(n: int) -> tuple[Tensor, ...]:
            base = (torch.randn(n, *run.spec.shape, generator=g), torch.randint(0, T, (n,), generator=g))
            return (*base, torch.randint(0, run.spec.num_classes + 1, (n,), generator=g)) if cond else base

        dyn = {name: {0: BATCH} for name in inputs}
        return [GraphSpec("unet", adapters.UNetStep(model), args(3), inputs, ["out"], dyn, "static",
                          [args(5), args(2)])]

    def config(self, run: Run) -> dict[str, Any]:
        model: Any = run.model
        options = dataclasses.asdict(type(model).sample_options_cls())
        return {"conditional": model.conditional, "null_label": int(model.null_label),
                "prediction": model.config.prediction, "schedule": model.config.schedule,
                "num_timesteps": model.config.num_timesteps,
                "alpha_bar": [float(a) for a in model.schedule.alpha_bar.tolist()],
                "sampling": {k: options[k] for k in ("sampler", "steps", "eta", "guidance", "clip_denoised")}}

    def calibration(self, run: Run, graph: GraphSpec, n: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
        """Noisy training images ``x_t ~ q(x_t | x_0)`` at the default sampler's timesteps (what the network sees
        while sampling), with their labels and the null label for a tenth of them (guidance)."""
        from genlab.api import load_splits
        from genlab.data.images import to_model
        from genlab.samplers import SAMPLERS

        model: Any = run.model
        train = load_splits(run).train
        g = _gen(seed)
        ts = SAMPLERS["dpmpp_2m"](model.schedule).timesteps(None)
        idx = torch.randperm(len(train.x), generator=g)[:n]
        if len(idx) < n:
            idx = idx[torch.randint(0, len(idx), (n,), generator=g)]
        pos = 0
        for size in _batches(n):
            sel = idx[pos : pos + size]
            pos += size
            x0 = to_model(train.x[sel])
            t = torch.tensor([ts[int(i)] for i in torch.randint(0, len(ts), (size,), generator=g)])
            xt = model.schedule.add_noise(x0, torch.randn(x0.shape, generator=g), t)
            y = train.y[sel] if train.y is not None else torch.zeros(size, dtype=torch.long)
            y = torch.where(torch.rand(size, generator=g) < 0.1, torch.full_like(y, model.null_label), y)
            yield {k: v for k, v in _np({"x": xt, "t": t, "label": y}).items() if k in graph.inputs}


@register_exporter("diffusion", "grid")
class GridDiffusionExporter(Exporter):
    """Absorbing-state diffusion on grids (music's SATB grid): the ``denoiser`` transformer, one call per
    unmasking step; the reverse process runs in numpy."""

    runtime = "absorbing"

    def graphs(self, run: Run) -> list[GraphSpec]:
        grid: Any = run.model.grid
        levels = run.spec.levels
        g = _gen(0)

        def args(n: int) -> tuple[Tensor, ...]:  # values 0 … levels, levels being the mask
            return (torch.randint(0, levels + 1, (n, *run.spec.shape), generator=g),)

        return [GraphSpec("denoiser", adapters.GridDenoiser(grid.net), args(3), ["x"], ["logits"], {"x": {0: BATCH}},
                          "dynamic", [args(1), args(5), (torch.full((2, *run.spec.shape), levels),)])]

    def config(self, run: Run) -> dict[str, Any]:
        from genlab.models.diffusion import GRID_STEPS

        return {"mask_id": int(run.spec.levels), "conditional": False, "sampling": {"steps": GRID_STEPS}}

    def held_out_nll(self, run: Run, test: Any, n: int, seed: int, call: Any) -> dict[str, float] | None:
        """The NLL of the masked cells of test grids under the denoiser, each grid masked at a time ``t`` drawn
        stratified on (0, 1] with a fixed seed (the cross-entropy inside the bound, unweighted)."""
        from genlab.export.quality import categorical_nll, perplexity_of

        x = test.head(n).x.numpy()
        rng = np.random.default_rng(seed)
        t = np.maximum((np.arange(len(x)) + rng.random(len(x))) / max(len(x), 1), 1e-3)
        masked = rng.random(x.shape) < t.reshape(-1, *([1] * (x.ndim - 1)))
        xt = np.where(masked, int(run.spec.levels), x)
        total, count = 0.0, 0
        for lo in range(0, len(x), 64):
            nll = categorical_nll(call("denoiser", {"x": xt[lo : lo + 64]})[0], x[lo : lo + 64])
            m = masked[lo : lo + 64]
            total, count = total + float(nll[m].sum()), count + int(m.sum())
        return perplexity_of(total, count)


@register_exporter("pixelcnn")
class PixelCNNExporter(Exporter):
    """PixelCNN's two stacks: ``vertical`` once per row, ``horizontal`` once per sub-pixel."""

    runtime = "pixelcnn"

    def _vertical(self, run: Run) -> adapters.PixelCNNVertical:
        return adapters.PixelCNNVertical(run.model)

    def graphs(self, run: Run) -> list[GraphSpec]:
        model: Any = run.model
        cond = model.conditional
        c, h, w = run.spec.shape
        g = _gen(0)
        vertical, horizontal = self._vertical(run), adapters.PixelCNNHorizontal(model)
        v_inputs = ["x", "label"] if cond else ["x"]

        def v_args(n: int, rows: int) -> tuple[Tensor, ...]:
            x = torch.rand(n, c, rows, w, generator=g) * 2 - 1
            return (x, _labels(run, n, g)) if cond else (x,)

        def h_args(n: int, cols: int) -> tuple[Tensor, ...]:
            with torch.no_grad():
                fv = vertical(*v_args(n, h))
            return torch.rand(n, c, 1, cols, generator=g) * 2 - 1, fv[..., :cols].contiguous()

        rows, cols = ("rows", 1, h), ("cols", 1, w)
        # dynamic int8: static QDQ (per-channel weights, MinMax-calibrated activations) doubled the tiny preset's
        # KID (+104 %); dynamic int8 (activations quantized per call) kept it within +1 % (RESULTS.md, issue 17)
        return [
            GraphSpec("vertical", vertical, v_args(3, min(h, 4)), v_inputs, ["from_v"],
                      {"x": {0: BATCH, 2: rows}, **({"label": {0: BATCH}} if cond else {})}, "dynamic",
                      [v_args(2, 1), v_args(5, h)]),
            GraphSpec("horizontal", horizontal, h_args(3, min(w, 4)), ["x", "from_v"], ["params"],
                      {"x": {0: BATCH, 3: cols}, "from_v": {1: BATCH, 4: cols}}, "dynamic",
                      [h_args(2, 1), h_args(5, w)]),
        ]

    def config(self, run: Run) -> dict[str, Any]:
        model: Any = run.model
        return {"conditional": model.conditional, "output": model.config.output, "params": model.net.params,
                "layers": len(model.net.layers)}


@register_exporter("gpt")
class GPTExporter(Exporter):
    """GPT's ``prefill`` (context → logits at every position + keys/values) and ``decode`` (new tokens + past
    keys/values → next-token logits + the extended cache) graphs; decoding runs in numpy."""

    runtime = "gpt"
    forms = ("tokens",)

    def _net(self, run: Run) -> Any:
        model: Any = run.model
        if model.config.lora_rank:  # merge adapters into a copy: the graphs hold plain weights
            model = copy.deepcopy(model).merge_lora()
        return model.net

    def graphs(self, run: Run) -> list[GraphSpec]:
        net = self._net(run)
        block, vocab = net.block_size, net.vocab_size
        shape = (net.n_layer, 0, net.n_head, 0, net.head_dim)
        g = _gen(0)

        def ids(n: int, t: int) -> Tensor:
            return torch.randint(0, vocab, (n, t), generator=g)

        def past(n: int, p: int) -> Tensor:
            return torch.randn(shape[0], n, shape[2], p, shape[4], generator=g)

        new, cache = ("new", 1, block), ("past", 0, max(block - 1, 2))
        ctx = min(block, 4)
        return [
            GraphSpec("prefill", adapters.GPTDecode(net, all_logits=True), (ids(2, ctx),), ["ids"],
                      ["logits", "k", "v"], {"ids": {0: BATCH, 1: new}}, "dynamic",
                      [(ids(3, 1),), (ids(1, block),)]),
            GraphSpec("decode", adapters.GPTDecode(net, all_logits=False), (ids(2, 2), past(2, 3), past(2, 3)),
                      ["ids", "past_k", "past_v"], ["logits", "k", "v"],
                      {"ids": {0: BATCH, 1: new}, "past_k": {1: BATCH, 3: cache}, "past_v": {1: BATCH, 3: cache}},
                      "dynamic",
                      [(ids(3, 1), past(3, 0), past(3, 0)), (ids(2, 1), past(2, block - 1), past(2, block - 1))]),
        ]

    def config(self, run: Run) -> dict[str, Any]:
        model: Any = run.model
        net: Any = model.net
        return {"block_size": net.block_size, "vocab_size": net.vocab_size, "bos_id": int(model.config.bos_id),
                "n_layer": net.n_layer, "n_head": net.n_head, "head_dim": net.head_dim,
                "positions": model.config.positions, "window_start": model.config.window_start, "conditional": False,
                "sampling": dataclasses.asdict(type(model).sample_options_cls())}


# -- turning a GraphSpec into ONNX ----------------------------------------------------------------

@register_exporter("rnn")
class RNNExporter(Exporter):
    """The LSTM/GRU language model as one ``step`` graph ``(ids, state) → (next-token logits, state)``: it reads the
    whole prompt from the zero state once, then one token per call; decoding runs in numpy."""

    runtime = "rnn"
    forms = ("tokens",)

    def graphs(self, run: Run) -> list[GraphSpec]:
        model: Any = run.model
        net, cfg = model.net, model.config
        lstm = cfg.cell == "lstm"
        block, vocab = run.spec.shape[0], run.spec.levels
        g = _gen(0)
        names = ["ids", "h", "c"] if lstm else ["ids", "h"]

        def args(n: int, t: int, zero: bool = False) -> tuple[Tensor, ...]:
            shape = (cfg.n_layer, n, cfg.hidden)
            state = [torch.zeros(shape) if zero else torch.randn(shape, generator=g) * 0.5 for _ in names[1:]]
            return (torch.randint(0, vocab, (n, t), generator=g), *state)

        dyn = {"ids": {0: BATCH, 1: ("new", 1, max(block, 2))}, **{s: {1: BATCH} for s in names[1:]}}
        return [GraphSpec("step", adapters.RNNStep(net), args(2, 3), names, ["logits", *(f"{s}_out" for s in
                          names[1:])], dyn, "dynamic", [args(3, 1), args(1, block, zero=True)])]

    def config(self, run: Run) -> dict[str, Any]:
        model: Any = run.model
        cfg = model.config
        return {"block_size": run.spec.shape[0], "vocab_size": run.spec.levels, "bos_id": int(cfg.bos_id),
                "cell": cfg.cell, "n_layer": cfg.n_layer, "hidden": cfg.hidden, "conditional": False,
                "sampling": dataclasses.asdict(type(model).sample_options_cls())}


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporter's warnings and logs (missing torchvision ops, deprecations) for one export."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


@contextlib.contextmanager
def shared_torchlib_registry() -> Iterator[None]:
    """Build the exporter's table of ATen → ONNX functions once for all graphs of an export instead of once per
    graph (about 2 s each on a laptop CPU). A no-op if the exporter's internals have moved."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:  # pragma: no cover - torch without the dynamo exporter
        yield
        return
    cls = getattr(_registration, "ONNXRegistry", None)
    raw = getattr(cls, "__dict__", {}).get("from_torchlib")
    original = getattr(cls, "from_torchlib", None)
    if cls is None or raw is None or original is None:  # pragma: no cover
        yield
        return
    built: dict[Any, Any] = {}

    def from_torchlib(_cls: Any, *args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = original(*args, **kwargs)
        return built[key]

    cls.from_torchlib = classmethod(from_torchlib)
    try:
        yield
    finally:
        cls.from_torchlib = raw


@dataclass
class Exported:
    """One graph as ONNX: the model proto and how it was made."""

    proto: Any
    exporter: str
    fallback_reason: str | None = None


def to_onnx(spec: GraphSpec, opset: int) -> Exported:
    """Export one graph with the dynamo exporter (``torch.export`` + ONNX Script); if it fails, with the
    TorchScript-based exporter, recording the dynamo exporter's error as the reason."""
    import onnx

    spec.module.eval()
    dims = {name: torch.export.Dim(name, min=lo, max=hi) for axes in spec.dynamic.values()
            for name, lo, hi in axes.values()}
    dynamic = {arg: ({axis: dims[name] for axis, (name, _, _) in spec.dynamic[arg].items()}
                     if arg in spec.dynamic else None) for arg in spec.inputs}
    try:
        with _quiet_export(), torch.no_grad():
            program = torch.onnx.export(spec.module, spec.args, input_names=spec.inputs, output_names=spec.outputs,
                                        dynamic_shapes=dynamic, opset_version=opset, dynamo=True, verbose=False,
                                        optimize=True)
        assert program is not None
        return Exported(fold_constant_nodes(program.model_proto), "dynamo")
    except Exception as e:  # any failure of the dynamo path: fall back, saying why
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
    buf = io.BytesIO()
    axes = {arg: {axis: name for axis, (name, _, _) in spec.dynamic.get(arg, {}).items()} for arg in spec.inputs}
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(spec.module, spec.args, buf,  # type: ignore[arg-type]
                          input_names=spec.inputs, output_names=spec.outputs,
                          dynamic_axes={**axes, **{o: {} for o in spec.outputs}}, opset_version=opset,
                          dynamo=False)
    return Exported(fold_constant_nodes(onnx.load_from_string(buf.getvalue())), "torchscript", reason)


#: operators :func:`fold_constant_nodes` evaluates ahead of time (deterministic, elementwise or layout only)
FOLDABLE = frozenset({"Mul", "Add", "Sub", "Div", "Neg", "Exp", "Log", "Sqrt", "Abs", "Cast", "Transpose",
                      "Reshape", "Squeeze", "Unsqueeze", "Concat", "Identity", "MatMul", "Pow", "Reciprocal",
                      "Slice", "Split", "Constant"})


def fold_constant_nodes(model: Any) -> Any:
    """Replace every node whose inputs are all initializers (a weight times its mask, a weight built from its
    parametrization, an LSTM's gate weights sliced and reordered from PyTorch's layout), and every ``Constant``
    node, by an initializer holding its output, in place; returns ``model``.

    The exporter's own optimizer keeps such nodes (it treats initializers as overridable inputs), so a masked
    convolution's weight would be recomputed on every call of the graph. Only the deterministic operators of
    :data:`FOLDABLE` are folded, each evaluated by ONNX's reference evaluator.
    """
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    inputs = {i.name for i in graph.input}
    consts = {t.name: t for t in graph.initializer if t.name not in inputs}
    opset = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    keep = []
    for node in graph.node:
        if node.op_type not in FOLDABLE or node.domain not in ("", "ai.onnx") or \
                not (node.input or node.op_type == "Constant") or not all(i in consts for i in node.input if i):
            keep.append(node)
            continue
        feeds = {i: numpy_helper.to_array(consts[i]) for i in node.input if i}
        single = helper.make_model(helper.make_graph(
            [node], "fold", [helper.make_tensor_value_info(i, consts[i].data_type, list(consts[i].dims))
                             for i in feeds],
            [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output]),
            opset_imports=opset)
        outs = ReferenceEvaluator(single).run(None, feeds)
        for name, value in zip(node.output, outs, strict=True):
            tensor = numpy_helper.from_array(np.asarray(value), name)
            graph.initializer.append(tensor)
            consts[name] = tensor
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output} | \
        {i for n in graph.node for a in n.attribute if a.type == onnx.AttributeProto.GRAPH for m in a.g.node
         for i in m.input}
    alive = [t for t in graph.initializer if t.name in used or t.name in inputs]
    del graph.initializer[:]
    graph.initializer.extend(alive)
    return model


def parity(spec: GraphSpec, run_graph: Any) -> tuple[float, float]:
    """Largest ``|Δ|`` between the module and the exported graph over the example and check inputs, and the
    largest ``|output|`` of the module there."""
    worst, scale = 0.0, 0.0
    for args in [spec.args, *spec.checks]:
        with torch.no_grad():
            ref = spec.module(*args)
        refs = ref if isinstance(ref, tuple) else (ref,)
        outs = run_graph(**{name: a.detach().cpu().numpy() for name, a in zip(spec.inputs, args, strict=True)})
        for r, o in zip(refs, outs, strict=True):
            r_np = r.detach().float().cpu().numpy()
            if r_np.shape != o.shape:
                return math.inf, scale
            if r_np.size:
                worst = max(worst, float(np.abs(r_np - o).max()))
                scale = max(scale, float(np.abs(r_np).max()))
    return worst, scale
