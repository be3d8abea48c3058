"""Sample from an exported folder with ``onnxruntime`` and ``numpy`` only — this module never imports torch.

``load(folder)`` reads ``export.json``, opens the graphs in ONNX Runtime and returns an :class:`Exported` whose
``sample(n, label=, seed=, **options)`` runs the family's sampling loop in numpy around the graphs:

* ``latent`` (VAE decoder, GAN generator): ``z ~ N(0, I)`` → graph → pixels;
* ``flow``: ``ε ~ N(0, I)`` and the temperature → the flow's inverse → pixels or vectors;
* ``diffusion``: one U-Net call per step inside numpy DDPM / DDIM / DPM-Solver++(2M), classifier-free guidance;
* ``pixelcnn``: the pixel loop, with the vertical stack run once per row and the horizontal stack on the row's
  pixels so far, once per sub-pixel;
* ``gpt``: a prefill graph, then KV-cached decode steps with temperature, top-k, top-p and repetition penalty;
* ``rnn``: one step graph that carries the LSTM/GRU state, with the same decoding options;
* ``seqvae``: the sequence VAE's latent-conditioned GRU decoder, token by token;
* ``absorbing``: grid diffusion's denoiser inside the numpy unmasking reverse process.

Random numbers come from ``numpy.random.default_rng(seed)``, so a seed gives the same samples on every machine
(not the same samples as PyTorch's generator). A runtime for a new sampling loop registers with
:func:`register_runtime`; a data kind's own runtimes (tables' in :mod:`genlab.export.kinds.tabular`) are imported by
:func:`load` from ``genlab.export.kinds.<kind>``.
"""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from genlab.config import build, check
from genlab.data.vocab import Tokenizer
from genlab.errors import CapabilityError, CheckpointError, ConfigError
from genlab.export.folder import read_manifest
from genlab.export.numpy_ops import (
    DEFAULT_STEPS,
    NumpySampler,
    Schedule,
    categorical,
    guided_logits,
    next_token,
    repetition_penalty,
    timesteps,
    unmask,
)
from genlab.export.outputs import Writer, load_kind, load_tokenizer, writer
from genlab.extras import require


class Graph:
    """One ONNX graph in an ONNX Runtime session: ``graph(**inputs)`` → its outputs, in order.

    Arguments:
        path: the ``.onnx`` file.
        threads: intra-op threads (0 = ONNX Runtime's default: one per physical core).
    """

    def __init__(self, path: Path, threads: int = 0) -> None:
        ort = require("onnxruntime", "export", "sampling from an exported model")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise CheckpointError(f"cannot load {path} ({str(e).splitlines()[0]})") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, **inputs: np.ndarray) -> list[np.ndarray]:
        feed = {k: v for k, v in inputs.items() if k in self.inputs}
        missing = set(self.inputs) - set(feed)
        if missing:
            raise ConfigError(f"graph input(s) {', '.join(sorted(missing))} not given")
        return list(self.session.run(None, feed))


def default_threads() -> int:
    """Intra-op threads: ``$OMP_NUM_THREADS`` when set, else 0 (ONNX Runtime decides)."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


class Runtime(ABC):
    """A sampling loop around an exported folder's graphs (one subclass per ``runtime`` named in ``export.json``).

    Arguments:
        manifest: the folder's ``export.json``.
        graphs: its graphs, by name.
        folder: the folder (for artifacts such as a tokenizer).
    """

    name: ClassVar[str] = ""
    #: frozen dataclass of sampling options (``genlab sample EXPORTED --field value``), or None
    options_cls: ClassVar[type | None] = None

    def __init__(self, manifest: Mapping[str, Any], graphs: Mapping[str, Graph], folder: Path) -> None:
        self.manifest, self.graphs, self.folder = manifest, graphs, folder
        self.model: dict[str, Any] = dict(manifest.get("model", {}))
        self.spec: dict[str, Any] = dict(manifest["spec"])
        self.conditional = bool(self.model.get("conditional", False))

    def labels(self, n: int, label: Any, rng: np.random.Generator) -> np.ndarray | None:
        """Validated labels ``(n,)`` int64: the given ones, uniform draws for a conditional model, or None.

        Raises:
            CapabilityError: for a label on an unconditional model; ConfigError for one out of range.
        """
        if not self.conditional:
            if label is not None:
                raise CapabilityError(f"this exported {self.manifest['family']} model is unconditional; drop the "
                                      "label")
            return None
        k = int(self.spec["num_classes"])
        if label is None:
            return rng.integers(0, k, n).astype(np.int64)
        y = np.asarray(label, dtype=np.int64).reshape(-1)
        if y.size == 1:
            y = np.repeat(y, n)
        if y.size != n:
            raise ConfigError(f"got {y.size} labels for {n} samples; give one label or one per sample")
        if y.min() < 0 or y.max() >= k:
            raise ConfigError(f"label {int(y.max() if y.max() >= k else y.min())} is out of range; this model has "
                              f"classes 0..{k - 1}")
        return y

    def options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validated sampling options (defaults filled in from ``options_cls``).

        Raises:
            ConfigError: for an unknown option or a bad value.
        """
        if self.options_cls is None:
            if values:
                raise ConfigError(f"family '{self.manifest['family']}' takes no sampling option "
                                  f"--{next(iter(values)).replace('_', '-')}")
            return {}
        return asdict(build(self.options_cls, dict(values)))

    @abstractmethod
    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        """``n`` samples in the data representation (``uint8`` images, ``float32`` vectors, ``int64`` tokens)."""

    def stream(self, n: int, rng: np.random.Generator, **options: Any) -> Iterator[np.ndarray]:
        """Samples piece by piece as they are generated (token runtimes)."""
        raise CapabilityError(f"exported {self.manifest['family']} samples cannot be streamed")


RUNTIMES: dict[str, type[Runtime]] = {}


def register_runtime(name: str) -> Callable[[type[Runtime]], type[Runtime]]:
    """Class decorator: the runtime for exported folders whose ``export.json`` names ``runtime: name``."""

    def deco(cls: type[Runtime]) -> type[Runtime]:
        if name in RUNTIMES:
            raise ValueError(f"runtime {name!r} is already registered")
        cls.name = name
        RUNTIMES[name] = cls
        return cls

    return deco


def to_uint8(v: np.ndarray) -> np.ndarray:
    """Model space [-1, 1] → 8-bit pixels, rounding half to even (as :func:`genlab.data.images.to_uint8`)."""
    return np.round((np.clip(v.astype(np.float32), -1, 1) + 1.0) * 127.5).astype(np.uint8)


def logistic_noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """``log u - log(1 - u)`` for ``u ~ U(1e-5, 1 - 1e-5)``: standard logistic noise."""
    u = np.clip(rng.random(shape, dtype=np.float32), 1e-5, 1 - 1e-5)
    return np.log(u) - np.log1p(-u)


@register_runtime("latent")
class LatentRuntime(Runtime):
    """Families that decode a Gaussian latent in one pass (VAE decoder, GAN generator).

    The graph's output is given by ``model.pixels``: ``model`` (values in [-1, 1]), ``logistic`` (a mean and a log
    scale per channel; ``sample_mode`` ``mean`` or ``sample``), ``bernoulli`` (logits) or ``categorical`` (logits
    of every cell of a grid over its values, last axis). ``model.prior`` holds a per-class Gaussian prior.
    """

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        z = rng.standard_normal((n, int(self.model["latent_dim"])), dtype=np.float32)
        prior = self.model.get("prior")
        if prior is not None and labels is not None:  # z = μ_y + σ_y · ε
            mean, logvar = (np.asarray(prior[k], dtype=np.float32)[labels] for k in ("mean", "logvar"))
            z = mean + np.exp(0.5 * logvar) * z
        return self.decode(z, labels, rng)

    def decode(self, z: np.ndarray, labels: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """``uint8`` images (``int64`` grid cells) from latents ``z (n, latent_dim)``."""
        out = self.graphs[self.model["graph"]](z=z, label=_labels_or_dummy(labels, len(z)))[0]
        pixels, mode = self.model["pixels"], self.model.get("sample_mode", "mean")
        if pixels == "categorical":  # out: logits (n, V, T, L)
            if mode == "mean":
                return out.argmax(-1).astype(np.int64)
            cells = categorical(_softmax(out.reshape(-1, out.shape[-1]).astype(np.float64)), rng)
            return cells.reshape(out.shape[:-1])
        if pixels == "logistic":
            mean, log_scale = np.split(out, 2, axis=1)
            return to_uint8(mean if mode == "mean" else mean + np.exp(log_scale) * logistic_noise(mean.shape, rng))
        if pixels == "bernoulli":
            probs = 1.0 / (1.0 + np.exp(-out))
            if mode == "sample":
                probs = (rng.random(probs.shape, dtype=np.float32) < probs).astype(np.float32)
            return np.round(probs * 255).astype(np.uint8)
        return to_uint8(out)


@register_runtime("seqvae")
class SeqVAERuntime(Runtime):
    """The sequence VAE on tokens: ``z ~ N(0, I)`` starts the decoder's state, then one token per step from the start
    token — the most likely one (``sample_mode`` ``mean``) or a draw — and everything after the first
    ``<|endoftext|>`` is ``<|endoftext|>`` (as :meth:`genlab.models.vae.VAE.decode` does on tokens)."""

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        z = rng.standard_normal((n, int(self.model["latent_dim"])), dtype=np.float32)
        return self.decode(z, rng)

    def decode(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Token windows ``(n, block_size)`` int64 from latents ``z (n, latent_dim)``."""
        eot = int(self.model["eot_id"])
        ids = np.full((len(z), 1), eot, dtype=np.int64)
        (h,) = self.graphs["start"](z=z)
        out = []
        for _ in range(int(self.model["block_size"])):
            logits, h = self.graphs["step"](ids=ids, z=z, h=h)
            last = logits[:, -1].astype(np.float64)
            if self.model["sample_mode"] == "mean":
                ids = last.argmax(-1)[:, None]
            else:
                ids = categorical(_softmax(last), rng)[:, None]
            out.append(ids.astype(np.int64))
        x = np.concatenate(out, axis=1)
        return np.where(np.cumsum(x == eot, axis=1) > 0, eot, x)


def _labels_or_dummy(labels: np.ndarray | None, n: int) -> np.ndarray:
    """Labels for a graph input (unconditional graphs have no label input, so the value is dropped)."""
    return labels if labels is not None else np.zeros(n, dtype=np.int64)


@dataclass(frozen=True)
class FlowOptions:
    """Sampling options of exported flows (as :class:`genlab.models.flow.FlowSampleOptions`).

    Arguments:
        temperature: scale of the prior's standard deviation.
    """

    temperature: float = 1.0

    def __post_init__(self) -> None:
        check(self.temperature > 0, f"--temperature must be positive, got {self.temperature}")


@register_runtime("flow")
class FlowRuntime(Runtime):
    """Normalizing flows: standard-normal ``ε`` and the temperature into the exported inverse."""

    options_cls = FlowOptions

    def inverse(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, temperature: float) -> np.ndarray:
        """The flow's inverse of ``temperature · ε`` for ``ε ~ N(0, I)``: ``(n, dims)`` in the model's space."""
        eps = rng.standard_normal((n, int(self.model["latent_dims"])), dtype=np.float32)
        t = np.asarray([temperature], dtype=np.float32)
        return self.graphs["inverse"](eps=eps, temperature=t, label=_labels_or_dummy(labels, n))[0]

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        v = self.inverse(n, labels, rng, options.get("temperature", 1.0))
        if self.manifest["form"] == "image":  # inverse of the dequantization (k + u) / 128 - 1
            return np.clip(np.floor((v + 1.0) * 128.0), 0, 255).astype(np.uint8)
        return v.astype(np.float32)


@dataclass(frozen=True)
class DiffusionOptions:
    """Sampling options of exported diffusion models (as :class:`genlab.models.diffusion.DiffusionSampleOptions`,
    without the inpainting and progress options).

    Arguments:
        sampler: ``ddpm``, ``ddim`` or ``dpmpp_2m``.
        steps: network evaluations (None: all T for ddpm, 50 for ddim, 25 for dpmpp_2m).
        eta: DDIM stochasticity.
        guidance: classifier-free guidance scale w: ``(1 - w)·uncond + w·cond``.
        clip_denoised: clamp the predicted clean image to [-1, 1] at every step.
    """

    sampler: str = "dpmpp_2m"
    steps: int | None = None
    eta: float = 0.0
    guidance: float = 1.0
    clip_denoised: bool = True

    def __post_init__(self) -> None:
        check(self.sampler in DEFAULT_STEPS,
              f"unknown --sampler '{self.sampler}'; choose one of: {', '.join(DEFAULT_STEPS)}")
        check(self.steps is None or self.steps >= 1, f"--steps must be at least 1, got {self.steps}")
        check(0 <= self.eta <= 1, f"--eta must be in [0, 1], got {self.eta}")
        check(bool(np.isfinite(self.guidance)), "--guidance must be a finite number")


@register_runtime("diffusion")
class DiffusionRuntime(Runtime):
    """The reverse-diffusion loop in numpy around one exported U-Net step."""

    options_cls = DiffusionOptions

    def __init__(self, manifest: Mapping[str, Any], graphs: Mapping[str, Graph], folder: Path) -> None:
        super().__init__(manifest, graphs, folder)
        self.schedule = Schedule(self.model["alpha_bar"])
        #: called with the U-Net's inputs at every step (calibration collects them)
        self.on_step: Callable[[dict[str, np.ndarray]], None] | None = None

    def net(self, x: np.ndarray, t: int, labels: np.ndarray | None, guidance: float) -> np.ndarray:
        """The guided network output at ``x_t`` (one batched call for cond + uncond when guided)."""
        n = len(x)
        null = np.full(n, int(self.model["null_label"]), dtype=np.int64)
        if not self.conditional or labels is None:
            return self._call(x, t, null if self.conditional else None)
        if guidance == 1.0:
            return self._call(x, t, labels)
        if guidance == 0.0:
            return self._call(x, t, null)
        both = self._call(np.concatenate([x, x]), t, np.concatenate([labels, null]))
        cond, uncond = both[:n], both[n:]
        return np.float32(1.0 - guidance) * uncond + np.float32(guidance) * cond

    def _call(self, x: np.ndarray, t: int, labels: np.ndarray | None) -> np.ndarray:
        inputs = {"x": x, "t": np.full(len(x), t, dtype=np.int64), "label": _labels_or_dummy(labels, len(x))}
        if self.on_step is not None:
            self.on_step(inputs)
        return self.graphs["unet"](**inputs)[0]

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        o = DiffusionOptions(**{k: v for k, v in options.items() if k in DiffusionOptions.__dataclass_fields__})
        if o.guidance != 1.0 and not self.conditional:
            raise CapabilityError("--guidance needs a class-conditional diffusion model; this one is unconditional")
        shape = tuple(self.spec["shape"])
        x = rng.standard_normal((n, *shape), dtype=np.float32)
        sampler = NumpySampler(self.schedule, o.sampler, o.eta)
        ts = timesteps(self.schedule, o.sampler, o.steps)
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            out = self.net(x, t, labels, o.guidance)
            x0, eps = self.schedule.predictions(out, x, t, self.model["prediction"], clip=o.clip_denoised)
            x = sampler.step(x0, eps, t, t_prev, x, rng)
        return to_uint8(x)


@dataclass(frozen=True)
class AbsorbingOptions:
    """Sampling options of exported grid diffusion (as :class:`genlab.models.diffusion.DiffusionSampleOptions`).

    Arguments:
        steps: unmasking steps from all-mask to a full grid (None = the model's default, 64).
    """

    steps: int | None = None

    def __post_init__(self) -> None:
        check(self.steps is None or self.steps >= 1, f"--steps must be at least 1, got {self.steps}")


@register_runtime("absorbing")
class AbsorbingRuntime(Runtime):
    """Absorbing-state diffusion on grids: from an all-mask grid, the denoiser once per step and the numpy reverse
    process (:func:`genlab.export.numpy_ops.unmask`)."""

    options_cls = AbsorbingOptions

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        o = AbsorbingOptions(**options)
        mask = int(self.model["mask_id"])
        x = np.full((n, *self.manifest["spec"]["shape"]), mask, dtype=np.int64)
        steps = o.steps or int(self.model["sampling"]["steps"])
        return unmask(lambda v: self.graphs["denoiser"](x=v)[0], x, mask, steps, rng).astype(np.int64)


@register_runtime("pixelcnn")
class PixelCNNRuntime(Runtime):
    """PixelCNN's pixel loop: per row one call of the vertical stack on the rows so far; per sub-pixel one call of
    the horizontal stack on the row's pixels so far (the stacks are causal, so that is exact)."""

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        c, h, w = (int(s) for s in self.spec["shape"])
        x = np.zeros((n, c, h, w), dtype=np.uint8)
        y = _labels_or_dummy(labels, n)
        for i in range(h):
            from_v = self.graphs["vertical"](x=_model(x[:, :, : i + 1]), label=y)[0]  # (L, n, 2h, 1, W)
            for j in range(w):
                for ch in range(c):
                    params = self.graphs["horizontal"](x=_model(x[:, :, i : i + 1, : j + 1]),
                                                       from_v=from_v[..., : j + 1])[0]  # (n, C, P)
                    x[:, ch, i, j] = self.draw(params[:, ch].astype(np.float64), rng)
        return x

    def draw(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``uint8`` values ``(n,)`` from one sub-pixel's output parameters ``(n, P)`` (inverse-CDF sampling)."""
        n = len(out)
        u = rng.random((n, 1))
        if self.model["output"] == "softmax":
            cdf = np.cumsum(_softmax(out), axis=1)
            return np.minimum((cdf < u).sum(1), 255).astype(np.uint8)
        logit_pi, mean, log_scale = np.split(out, 3, axis=1)
        cdf = np.cumsum(_softmax(logit_pi), axis=1)
        k = np.minimum((cdf < u).sum(1, keepdims=True), mean.shape[1] - 1)
        m, s = np.take_along_axis(mean, k, 1)[:, 0], np.take_along_axis(np.maximum(log_scale, -7.0), k, 1)[:, 0]
        u2 = np.clip(rng.random(n), 1e-5, 1 - 1e-5)
        return to_uint8(m + np.exp(s) * (np.log(u2) - np.log1p(-u2)))


def _model(x: np.ndarray) -> np.ndarray:
    """``uint8`` pixels → model space ``k / 127.5 - 1`` (float32)."""
    return x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class DecodingOptions:
    """Sampling options of exported token models (as :class:`genlab.samplers.decoding.DecodingOptions`).

    Arguments:
        prompt: text every sample continues ("" starts from the start token).
        max_tokens: tokens to generate per sample (None = the model's block size).
        temperature: divide logits by this; 0 = greedy.
        top_k: keep only the k most likely tokens (0 = off).
        top_p: keep the smallest set of most likely tokens whose probability reaches p (1 = off).
        repetition_penalty: CTRL penalty > 1 discourages tokens already in the sequence (1 = off).
        stop: strings that end a sample.
        kv_cache: decode with the KV-cached step graph (False re-runs the prefill graph on the whole context).
        guidance: classifier-free guidance scale of the prompt (1 = off), as the family decodes it.
    """

    prompt: str = ""
    max_tokens: int | None = None
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    kv_cache: bool = True
    guidance: float = 1.0

    def __post_init__(self) -> None:
        check(self.max_tokens is None or self.max_tokens > 0, "--max-tokens must be positive")
        check(self.temperature >= 0, "--temperature must be >= 0 (0 = greedy)")
        check(self.top_k >= 0, "--top-k must be >= 0 (0 = off)")
        check(0 < self.top_p <= 1, "--top-p must be in (0, 1]")
        check(self.repetition_penalty > 0, "--repetition-penalty must be positive (1 = off)")
        check(0 <= self.guidance < float("inf"), "--guidance must be a finite number >= 0 (1 = off)")


class TokenRuntime(Runtime):
    """Autoregressive decoding of token models around a network that reads a context once (:meth:`start`) and then
    one token per step (:meth:`advance`), with temperature, top-k, top-p, repetition penalty and stop strings.
    Token data whose positions own id ranges (``spec.info["token_ranges"]``, a table's columns) is decoded over each
    position's ids only, as the families decode it."""

    options_cls = DecodingOptions

    def __init__(self, manifest: Mapping[str, Any], graphs: Mapping[str, Graph], folder: Path) -> None:
        super().__init__(manifest, graphs, folder)
        self.block_size = int(self.model["block_size"])
        self.bos = int(self.model["bos_id"])
        self._tokenizer: Tokenizer | None = None
        ranges = self.spec.get("info", {}).get("token_ranges")
        ids = np.arange(int(self.model["vocab_size"]))
        #: ``(T, V)``: the ids each position may take (token data whose positions own id ranges, e.g. tables)
        self.allowed = np.stack([(ids >= lo) & (ids < hi) for lo, hi in ranges]) if ranges else None

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.folder)
        return self._tokenizer

    def prompt_ids(self, prompt: str) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(prompt, strict=True)] if prompt else []

    @abstractmethod
    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Next-token logits at every position of windows ``ids (B, T)`` (``T ≤ block_size``) → ``(B, T, V)``."""

    @abstractmethod
    def start(self, ctx: np.ndarray, o: DecodingOptions) -> np.ndarray:
        """Read the start token and prompt ``ctx (B, P)`` → next-token logits ``(B, V)``."""

    @abstractmethod
    def advance(self, history: np.ndarray, tok: np.ndarray, o: DecodingOptions) -> np.ndarray:
        """Read the new tokens ``tok (B,)`` (``history (B, P + i)`` ends with them) → next-token logits."""

    def stream(self, n: int, rng: np.random.Generator, **options: Any) -> Iterator[np.ndarray]:
        o = DecodingOptions(**options)
        ctx = np.array([[self.bos, *self.prompt_ids(o.prompt)]] * n, dtype=np.int64)
        steps = o.max_tokens or self.block_size
        start = ctx.shape[1]
        history = ctx
        logits = self.start(ctx, o)
        plain: TokenRuntime | None = None  # guidance: a second decoding state that read the start token only
        if o.guidance != 1.0:
            if start < 2:
                raise ConfigError("--guidance needs a prompt to follow: give --prompt, or --condition for a run "
                                  "trained with --properties")
            plain = copy.copy(self)
            logits = guided_logits(logits, plain.start(ctx[:, :1], o), o.guidance)
        for i in range(steps):
            if self.allowed is not None:  # the ids this position may take
                logits = np.where(self.allowed[min(start - 1 + i, len(self.allowed) - 1)], logits, -np.inf)
            tok = next_token(repetition_penalty(logits, history, o.repetition_penalty), rng, o.temperature,
                             o.top_k, o.top_p)
            yield tok
            history = np.concatenate([history, tok[:, None]], axis=1)
            if i == steps - 1 or (o.stop and self._finished(history[:, start:], o.stop)):
                return
            logits = self.advance(history, tok, o)
            if plain is not None:
                logits = guided_logits(logits, plain.advance(np.concatenate([ctx[:, :1], history[:, start:]], 1),
                                                             tok, o), o.guidance)

    def _finished(self, generated: np.ndarray, stop: tuple[str, ...]) -> bool:
        texts = [self.tokenizer.decode(row) for row in generated]
        return all(any(s in t for s in stop) for t in texts)

    def sample(self, n: int, labels: np.ndarray | None, rng: np.random.Generator, **options: Any) -> np.ndarray:
        o = DecodingOptions(**options)
        steps = o.max_tokens or self.block_size
        toks = list(self.stream(n, rng, **options))
        out = np.full((n, steps), self.bos, dtype=np.int64)
        if toks:
            out[:, : len(toks)] = np.stack(toks, axis=1)
        head = np.array([self.prompt_ids(o.prompt)] * n, dtype=np.int64).reshape(n, -1)
        return np.concatenate([head, out], axis=1)


@register_runtime("gpt")
class GPTRuntime(TokenRuntime):
    """GPT: the prefill graph encodes the context, the decode graph appends one token at a time to the key/value
    cache; past the block size the last 3/4 block is re-encoded (as :class:`genlab.models.gpt.GPT` does). A
    ``window_start = text`` model's start token is dropped once real tokens follow it, as GPT decodes."""

    def __init__(self, manifest: Mapping[str, Any], graphs: Mapping[str, Graph], folder: Path) -> None:
        super().__init__(manifest, graphs, folder)
        self.cache: tuple[np.ndarray, np.ndarray] | None = None
        #: ``window_start = text`` models never saw the start token before real tokens: it is dropped once they
        #: follow, and their contexts hold at most block_size - 1 tokens (``genlab.models.gpt._CachedDecoder``)
        self.strip = self.model.get("window_start") == "text"
        self.limit = self.block_size - int(self.strip)

    def _context(self, h: np.ndarray) -> np.ndarray:
        """What the model sees: without the start token once real tokens follow it (``window_start = text``)."""
        return h[:, 1:] if self.strip and h.shape[1] > 1 and bool((h[:, 0] == self.bos).all()) else h

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Next-token logits at every position of windows ``ids (B, T)`` (``T ≤ block_size``) → ``(B, T, V)``."""
        return self.graphs["prefill"](ids=ids.astype(np.int64))[0]

    def _encode(self, ids: np.ndarray, o: DecodingOptions) -> np.ndarray:
        logits, k, v = self.graphs["prefill"](ids=ids)
        self.cache = (k, v) if o.kv_cache else None
        return logits[:, -1]

    def start(self, ctx: np.ndarray, o: DecodingOptions) -> np.ndarray:
        return self._encode(self._context(ctx)[:, -self.limit :], o)

    def advance(self, history: np.ndarray, tok: np.ndarray, o: DecodingOptions) -> np.ndarray:
        if self.cache is None:  # no KV cache: recompute the last block
            return self._encode(self._context(history)[:, -self.limit :], o)
        if self.cache[0].shape[3] + 1 > self.limit:
            return self._encode(self._context(history)[:, -(3 * self.limit) // 4 :], o)
        if self.strip and history.shape[1] == 2:  # the first real token replaces the lone start token
            return self._encode(self._context(history), o)
        logits, k, v = self.graphs["decode"](ids=tok[:, None], past_k=self.cache[0], past_v=self.cache[1])
        self.cache = (k, v)
        return logits


@register_runtime("rnn")
class RNNRuntime(TokenRuntime):
    """LSTM/GRU: the step graph reads the prompt from the zero state, then one token per call; the recurrent state
    carries the whole context, so there is no block limit (as :class:`genlab.models.rnn.RNN` decodes)."""

    def __init__(self, manifest: Mapping[str, Any], graphs: Mapping[str, Graph], folder: Path) -> None:
        super().__init__(manifest, graphs, folder)
        self.state_names = ["h", "c"] if self.model["cell"] == "lstm" else ["h"]
        self.state: list[np.ndarray] = []

    def _step(self, ids: np.ndarray) -> np.ndarray:
        logits, *self.state = self.graphs["step"](ids=ids, **dict(zip(self.state_names, self.state, strict=True)))
        return logits  # (B, T, V)

    def _zero(self, n: int) -> None:
        shape = (int(self.model["n_layer"]), n, int(self.model["hidden"]))
        self.state = [np.zeros(shape, dtype=np.float32) for _ in self.state_names]

    def logits(self, ids: np.ndarray) -> np.ndarray:
        self._zero(len(ids))
        return self._step(ids.astype(np.int64))

    def start(self, ctx: np.ndarray, o: DecodingOptions) -> np.ndarray:
        self._zero(len(ctx))
        return self._step(ctx)[:, -1]

    def advance(self, history: np.ndarray, tok: np.ndarray, o: DecodingOptions) -> np.ndarray:
        return self._step(tok[:, None])[:, -1]


class Exported:
    """An exported model opened for sampling (:func:`load`).

    Attributes:
        folder, manifest: the folder and its ``export.json``.
        runtime: the family's sampling loop around the graphs.
        writer: writes its samples to files (:mod:`genlab.export.outputs`).
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], runtime: Runtime) -> None:
        self.folder, self.manifest, self.runtime = folder, manifest, runtime
        self._writer: Writer | None = None

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            self._writer = writer(self.folder, self.manifest)
        return self._writer

    @property
    def family(self) -> str:
        return str(self.manifest["family"])

    def sample(self, n: int, *, label: Any = None, seed: int = 0, **options: Any) -> np.ndarray:
        """Draw ``n`` samples (``uint8`` images, ``float32`` vectors, ``int64`` token ids).

        Arguments:
            n: number of samples.
            label: class label (one for all, or one per sample) for a conditional model.
            seed: seed of ``numpy.random.default_rng``.
            **options: the family's sampling options (:attr:`Runtime.options_cls`).

        Raises:
            ConfigError: for ``n < 1``, a bad label or option; CapabilityError for a label on an unconditional
                model.
        """
        if n < 1:
            raise ConfigError(f"-n must be at least 1, got {n}")
        rng = np.random.default_rng(seed)
        opts = self.runtime.options(options)
        labels = self.runtime.labels(n, label, rng)
        return self.runtime.sample(n, labels, rng, **opts)

    def stream(self, *, seed: int = 0, **options: Any) -> Iterator[np.ndarray]:
        """One sample piece by piece as it is generated (token models): ``(1,)`` new ids per step."""
        rng = np.random.default_rng(seed)
        return self.runtime.stream(1, rng, **self.runtime.options(options))


def load(folder: str | Path, threads: int | None = None) -> Exported:
    """Open an exported folder for sampling.

    Arguments:
        folder: a folder written by ``genlab export``.
        threads: ONNX Runtime intra-op threads (default: ``$OMP_NUM_THREADS``, else ONNX Runtime's choice).

    Raises:
        CheckpointError: for a folder that is not an export, from a newer format, or with a runtime this genlab
            does not have; ExtraMissing without onnxruntime.
    """
    path = Path(folder)
    manifest = read_manifest(path)
    load_kind(str(manifest["kind"]))  # a data kind's own runtimes live in genlab.export.kinds.<kind>
    cls = RUNTIMES.get(str(manifest["runtime"]))
    if cls is None:
        raise CheckpointError(f"{path} needs the '{manifest['runtime']}' runtime, which this genlab does not have "
                              f"(it has {', '.join(sorted(RUNTIMES))}); upgrade genlab")
    n_threads = default_threads() if threads is None else threads
    graphs = {name: Graph(path / g["file"], n_threads) for name, g in manifest["graphs"].items()}
    return Exported(path, manifest, cls(manifest, graphs, path))
