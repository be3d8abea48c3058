"""The contract every modality keeps, and the registry of modalities.

A modality owns everything specific to a kind of data: its config class, its built-in datasets (registered with
``@register_dataset(name, kind=...)``), loading into train/test splits, run artifacts (a tokenizer), writing
samples to files and rendering them as ``(mime, bytes)`` for reports and servers, its evaluation (options and
metric functions), the rows it shows in CLI and HTML tables, what ``compare`` puts in its report, and its optional
operations (inpainting, streaming text) as declared capabilities, and what the server needs to rate and watch it
(:meth:`Modality.corrupt` for gold pairs, :meth:`Modality.drift_features` and :meth:`Modality.drift_statistics`
for the drift monitor, :meth:`Modality.stream_texts` for completions). The generic layers (``api``, ``cli``,
``compare``, ``report``, ``serve``) call :func:`modality` and these methods; they never test a kind by name.

Adding a modality is one module: subclass :class:`Modality`, decorate it with :func:`register_modality`, register
its datasets, and give its data one of the forms the families model (``"image"``, ``"vector"``, ``"tokens"``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor

from genlab.core import DATASETS, Registry
from genlab.data import Dataset
from genlab.errors import CapabilityError, ConfigError, DataError
from genlab.report.html import Column

if TYPE_CHECKING:
    from genlab.run import Run

Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """A progress callback that does nothing."""
    return None


@dataclass
class Splits:
    """A modality's loaded data.

    Arguments:
        train, test: the splits (examples in the data representation plus their :class:`~genlab.core.DataSpec`).
        preprocessing: JSON-able record of what was done to the data, stored in the run's ``config.json``.
        files: run artifacts to write into the run folder, ``name → bytes`` (e.g. ``tokenizer.json``).
    """

    train: Dataset
    test: Dataset
    preprocessing: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Evaluation:
    """What evaluating a run produced: the JSON-able report, and the samples it drew (for reports), if any."""

    report: dict[str, Any]
    samples: Tensor | None = None
    labels: Tensor | None = None


@dataclass
class Examples:
    """Given data in a run's representation, for an application (anomaly scores, latent codes, …).

    Arguments:
        x: examples ``(N, *spec.shape)`` as the family sees them.
        names: one name per unit (a file, a row, a document).
        y: labels ``(N,)`` when the data has them.
        units: ``(N,)`` index into ``names`` of the unit each example belongs to (a document cut into several
            windows); None when every example is its own unit.
    """

    x: Tensor
    names: list[str]
    y: Tensor | None = None
    units: Tensor | None = None


@dataclass(frozen=True)
class TextDelta:
    """What one of the samples a :meth:`Modality.stream_texts` call generates together gained in one step.

    Arguments:
        index: which sample (``0 … n−1``).
        text: its new text ("" while a split character waits for its rest).
        finish: None while it goes on; ``"stop"`` when a stop string or the end token ended it, ``"length"`` when it
            reached its token limit.
        tokens: tokens it generated in this step (0 once finished).
    """

    index: int
    text: str
    finish: str | None = None
    tokens: int = 1


@dataclass
class TextStream:
    """Samples generated together as text (capability ``stream``): validated before the first step runs.

    Arguments:
        prompt_tokens: tokens of the prompt every sample continues.
        steps: per generation step, the :class:`TextDelta` of every unfinished sample.
        samples: once ``steps`` is exhausted, the generated samples in the data representation (without the
            prompt), e.g. for the drift monitor.
    """

    prompt_tokens: int
    steps: Iterator[list[TextDelta]]
    samples: Tensor | None = None


class TextBatch(ABC):
    """Text generations that join and leave one running batch between steps (iteration-level batching: the
    server's ``/v1/completions`` under load, where a request that arrives mid-generation starts at the next step
    instead of waiting for the batch to end). All share one prompt and set of options.

    References:
        Yu et al., "Orca: A Distributed Serving System for Transformer-Based Generative Models", OSDI 2022.
    """

    prompt_tokens: int = 0

    @property
    @abstractmethod
    def live(self) -> int:
        """Generations in progress."""

    @property
    @abstractmethod
    def room(self) -> int:
        """Generations that can still join."""

    @abstractmethod
    def add(self) -> int:
        """Start a generation → its id (its first token comes with the next :meth:`step`)."""

    @abstractmethod
    def step(self) -> list[TextDelta]:
        """One token for every live generation → their :class:`TextDelta` (``index`` is the generation's id);
        a finished generation leaves the batch."""

    @abstractmethod
    def remove(self, index: int) -> None:
        """Stop generation ``index`` (its client went away)."""

    @abstractmethod
    def samples(self, indices: Sequence[int]) -> Tensor:
        """The generated samples of ``indices`` in the data representation (as :attr:`TextStream.samples`)."""


@dataclass(frozen=True)
class NoOptions:
    """Placeholder options class of a modality with no evaluation options."""


class Modality(ABC):
    """Abstract base of every modality (one instance per kind, registered with :func:`register_modality`).

    Class constants describe what the modality offers; the methods do its work. Defaults cover what most kinds
    share (the likelihood part of an evaluation, its table rows); a subclass overrides the rest.
    """

    kind: ClassVar[str] = ""
    #: frozen dataclass of data options (``--data``, …); its fields are ``genlab train`` options
    config_cls: ClassVar[type]
    #: representations the modality produces (``DataSpec.form``); a family models one of them
    forms: ClassVar[tuple[str, ...]] = ()
    #: optional operations: "inpaint" (fill a masked part of given data), "stream" (text as it is generated),
    #: "condition" (samples that satisfy a ``--condition`` such as ``cut=Ideal`` or ``qed=0.9``), "denoise"
    #: (read noisy data on the data's unit scale and write the cleaned result)
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: files a run of this kind keeps beside its weights (read back by :meth:`open_artifacts`)
    artifact_files: ClassVar[tuple[str, ...]] = ()
    #: file formats samples can be written in (suffixes without a dot); the first is the default
    sample_formats: ClassVar[tuple[str, ...]] = ()
    #: samples ``genlab sample`` draws when ``-n`` is not given
    default_samples: ClassVar[int] = 64
    #: without ``--out``, ``genlab sample`` prints the samples (text) instead of writing a file
    prints_samples: ClassVar[bool] = False
    #: frozen dataclass of evaluation options (``genlab eval RUN --field value``)
    eval_options_cls: ClassVar[type] = NoOptions
    #: frozen dataclass of sample-file options (``genlab sample RUN --field value``), or None
    output_options_cls: ClassVar[type | None] = None
    #: spec fields runs of an older format may lack (e.g. the 256 levels of 8-bit pixels)
    spec_defaults: ClassVar[dict[str, Any]] = {}
    #: keys :meth:`evaluate` always puts in its report (the modality contract test checks them)
    eval_keys: ClassVar[tuple[str, ...]] = ("likelihood",)

    # -- data --------------------------------------------------------------------------------------
    @abstractmethod
    def load(self, cfg: Any, form: str) -> Splits:
        """Load, preprocess and split the data ``cfg`` names, in representation ``form``.

        Raises:
            DataError: for unknown, missing, empty or inconsistent data, in one line.
        """

    def claims(self, path: Path) -> int:
        """How strongly this modality claims a user path given as ``--data``: 0 not at all, 1 as a fallback (any
        text file is text), 2 as its own (``.npz``, a folder of images, …)."""
        return 0

    def data_config(self, run_config: Mapping[str, Any], path: Path | None) -> Any:
        """The data config that reloads a run's splits (a modality may point options at the run's own files)."""
        from genlab.config import build

        return build(self.config_cls, run_config["data"])

    def open_artifacts(self, files: Mapping[str, bytes]) -> dict[str, Any]:
        """Objects a run's models and operations need beside the weights, from its artifact files."""
        return {}

    # -- samples -----------------------------------------------------------------------------------
    def sample_format(self, path: Path, fmt: str | None) -> str:
        """The format to write ``path`` in: ``fmt``, else the path's suffix, else (no suffix) the default.

        Raises:
            ConfigError: for a format this modality cannot write.
        """
        chosen = fmt or path.suffix.lower().lstrip(".") or self.sample_formats[0]
        if chosen not in self.sample_formats:
            raise ConfigError(f"--format must be {' or '.join(self.sample_formats)} for {self.kind} data, "
                              f"got {chosen!r} (from {'--format' if fmt else path.name})")
        return chosen

    @abstractmethod
    def write_samples(self, run: Run, samples: Tensor, path: Path, fmt: str, labels: Tensor | None = None,
                      options: Mapping[str, Any] | None = None) -> Path:
        """Write samples (as ``sample()`` returned them) to ``path`` in format ``fmt`` atomically; returns the path."""

    @abstractmethod
    def render(self, run: Run, samples: Tensor) -> tuple[str, bytes]:
        """Samples as one ``(mime type, bytes)`` for a report or a web page (a PNG grid, UTF-8 text, …)."""

    def draw(self, run: Run, n: int, cond: Tensor | None, generator: torch.Generator,
             options: Mapping[str, Any]) -> Tensor:
        """``n`` samples of the run's model, as :func:`genlab.sample` returns them; the default is the family's
        ``sample``. A modality overrides it to hold its data's rules on every sample (a table's constraints) or to
        draw in memory-sized chunks."""
        return run.model.sample(n, cond, generator=generator, **options)

    def show(self, run: Run, samples: Tensor) -> str:
        """Samples as terminal text (modalities with ``prints_samples``)."""
        raise CapabilityError(f"{self.kind} samples cannot be printed; write them with --out FILE")

    def stream(self, run: Run, *, seed: int = 0, options: Mapping[str, Any] | None = None) -> Iterator[str]:
        """One sample as text pieces while it is generated (capability ``stream``)."""
        raise CapabilityError(f"{self.kind} samples cannot be streamed")

    def stream_texts(self, run: Run, n: int, *, seed: int = 0, options: Mapping[str, Any] | None = None
                     ) -> TextStream:
        """``n`` samples as text generated together, step by step, without the prompt (capability ``stream``;
        the server's ``/v1/completions``). Options are the family's sampling options (``prompt``, ``stop``, …).

        Raises:
            CapabilityError: for a modality whose samples are not streamed text; ConfigError/DataError for a bad
                prompt (before anything is generated).
        """
        raise CapabilityError(f"{self.kind} samples cannot be streamed")

    def text_batch(self, run: Run, slots: int, *, seed: int = 0, options: Mapping[str, Any] | None = None
                   ) -> TextBatch | None:
        """A :class:`TextBatch` of up to ``slots`` generations with ``options``, or None where the family or the
        options cannot join a running batch (the caller then generates in fixed batches with
        :meth:`stream_texts`)."""
        return None

    # -- optional operations -----------------------------------------------------------------------
    def sample_condition(self, run: Run, n: int, condition: str, *, seed: int = 0, label: Tensor | None = None,
                         options: Mapping[str, Any] | None = None) -> Tensor:
        """``n`` samples that satisfy ``condition`` (capability ``condition``), written as the modality defines it
        (e.g. ``cut=Ideal,color=E`` for tables, ``qed=0.9,logp=2.5`` for molecules).

        Raises:
            ConfigError: for a condition that names unknown fields or cannot be met.
        """
        raise CapabilityError(f"{self.kind} data takes no --condition")

    def read_inpaint_inputs(self, run: Run, source: Path, box: str | None, mask: Path | None
                            ) -> tuple[Tensor, Tensor]:
        """Data to fill and its mask (True = fill) from files (capability ``inpaint``)."""
        raise CapabilityError(f"{self.kind} data cannot be inpainted")

    def check_inpaint(self, run: Run, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Validate data to fill and its mask and bring them to ``(N, *shape)`` (capability ``inpaint``)."""
        raise CapabilityError(f"{self.kind} data cannot be inpainted")

    def write_inpainted(self, run: Run, x: Tensor, mask: Tensor, filled: Tensor, path: Path) -> Path:
        """Write inpainting results (capability ``inpaint``)."""
        raise CapabilityError(f"{self.kind} data cannot be inpainted")

    # -- applications (genlab.apps) ----------------------------------------------------------------
    def read_examples(self, run: Run, source: Path | None = None) -> Examples:
        """Data to score, encode or edit with ``run``, in its representation: the run's test split when ``source``
        is None, else the data at ``source`` loaded the way the run's data was (train and test splits together).

        Raises:
            DataError: for data the modality cannot read or of another shape than the run's.
        """
        from torch import cat

        if source is None:
            test = self.load(self.data_config(run.config, run.path), run.spec.form).test
            return Examples(test.x, [f"test:{i}" for i in range(len(test))], test.y)
        cfg = self.data_config({**run.config, "data": {**run.config["data"], "data": str(source)}}, run.path)
        splits = self.load(cfg, run.spec.form)
        if tuple(splits.train.spec.shape) != tuple(run.spec.shape):
            raise DataError(f"{source} holds examples of shape {tuple(splits.train.spec.shape)} but the run models "
                            f"{tuple(run.spec.shape)}")
        parts = [(name, s) for name, s in (("train", splits.train), ("test", splits.test))]
        x = cat([s.x for _, s in parts])
        labelled = all(s.y is not None for _, s in parts)
        y = cat([s.y for _, s in parts if s.y is not None]) if labelled else None
        return Examples(x, [f"{name}:{i}" for name, s in parts for i in range(len(s))], y)

    def complexity_bits(self, run: Run, x: Tensor) -> Tensor:
        """Length in bits of each example under a generic lossless compressor (the input-complexity term of
        complexity-corrected anomaly scores): zlib at level 9 on the example's bytes, integers in the narrowest
        unsigned type that holds the data's levels. A modality overrides it with a compressor for its kind."""
        import zlib

        import numpy as np
        import torch

        arr = x.detach().cpu().numpy()
        levels = run.spec.levels
        if levels and not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.uint8 if levels <= 256 else np.uint16 if levels <= 65536 else np.uint32)
        return torch.tensor([8.0 * len(zlib.compress(np.ascontiguousarray(a).tobytes(), 9)) for a in arr],
                            dtype=torch.float64)

    def read_noisy(self, run: Run, source: Path) -> Tensor:
        """Noisy data to denoise, as floats on the data's unit scale (capability ``denoise``)."""
        raise CapabilityError(f"{self.kind} data cannot be denoised")

    def write_denoised(self, run: Run, noisy: Tensor, clean: Tensor, path: Path) -> Path:
        """Write denoising results (capability ``denoise``)."""
        raise CapabilityError(f"{self.kind} data cannot be denoised")

    # -- evaluation --------------------------------------------------------------------------------
    def likelihood(self, run: Run, test: Dataset, batch_size: int) -> dict[str, Any]:
        """Held-out likelihood: NLL (nats/example) and bits/dim, labelled exact, bound or none."""
        from genlab.metrics.likelihood import likelihood_report

        return likelihood_report(run.model, test, batch_size)

    def sample_metrics(self, run: Run, splits: Splits, options: Any, evaluation: Evaluation, *, seed: int,
                       progress: Progress) -> None:
        """Add sample-based metrics to ``evaluation`` (and the samples drawn); the default adds none."""
        return None

    def evaluate(self, run: Run, splits: Splits, options: Any, *, batch_size: int = 100,
                 max_examples: int | None = None, seed: int = 0, progress: Progress = no_progress) -> Evaluation:
        """Held-out likelihood plus this modality's sample-based metrics under ``options`` (``eval_options_cls``).

        Raises:
            ConfigError: for bad options (e.g. ``max_examples < 1``).
        """
        test = splits.test
        if max_examples is not None:
            if max_examples < 1:
                raise ConfigError(f"--max-examples must be at least 1, got {max_examples}")
            test = test.head(max_examples)
        progress("likelihood", 0, 1)
        evaluation = Evaluation(self.likelihood(run, test, batch_size))
        progress("likelihood", 1, 1)
        self.sample_metrics(run, splits, options, evaluation, seed=seed, progress=progress)
        return evaluation

    def rows(self, report: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(name, value)`` rows of an evaluation report for the CLI table; the default shows the likelihood."""
        return likelihood_rows(report)

    def summary(self, report: Mapping[str, Any]) -> dict[str, Any]:
        """Flat ``key → number`` view of a report for comparison tables (keys of :meth:`columns`)."""
        return {}

    def columns(self) -> list[tuple[str, str, list[Column]]]:
        """Sections of the comparison report: ``(heading, note, columns)`` over :meth:`summary` keys."""
        return []

    def report_sections(self, entries: Mapping[str, tuple[Run, Evaluation]], splits: Splits
                        ) -> list[tuple[str, str]]:
        """Extra ``(heading, html)`` sections of the comparison report (e.g. nearest training images)."""
        return []


    # -- serving: human evaluation and drift monitoring ---------------------------------------------
    def corrupt(self, run: Run, x: Tensor, generator: torch.Generator) -> Tensor:
        """A visibly broken copy of real examples ``x`` for gold (attention-check) pairs of the arena: a rater who
        prefers it to the real example is not paying attention. The default shuffles the elements of each
        example (an image becomes noise, a text a jumble of tokens, a table row a mix of its cells)."""
        flat = x.reshape(len(x), -1)
        order = torch.stack([torch.randperm(flat.shape[1], generator=generator) for _ in range(len(x))])
        return flat.gather(1, order.to(flat.device)).reshape(x.shape)

    def drift_features(self, run: Run, samples: Tensor) -> dict[str, np.ndarray]:
        """Per-sample features the drift statistics compare: ``name → array`` with one row per sample.

        The monitor (:mod:`genlab.serve.drift`) computes them once for the reference set drawn at deploy time and
        once per window of served samples, keeps only them, and resamples their rows for its bootstrap null, so
        rows must be independent per sample (a window-level number such as corpus distinct-n belongs in
        :meth:`drift_statistics`). The default: the samples flattened to ``float64 (N, D)`` under ``"x"``.
        """
        return {"x": samples.reshape(len(samples), -1).double().cpu().numpy()}

    def drift_statistics(self, run: Run, reference: Mapping[str, np.ndarray], window: Mapping[str, np.ndarray],
                         origin: np.ndarray | None = None) -> dict[str, float]:
        """Distances of a window of served samples from the reference, from their :meth:`drift_features`.

        Each value is 0 when the two are alike and grows with the shift; the monitor tests each one-sided against
        the quantile of its values on reference-vs-reference windows. Return the same names for every window.

        Arguments:
            reference: features of the reference set.
            window: features of the window.
            origin: for a bootstrap window, which draw each row repeats (rows with equal origin are one draw; a
                U-statistic must not pair them, see :func:`genlab.metrics.drift.mmd2`); None for served windows.

        Returns:
            ``name → distance``. The default: ``mmd`` — unbiased MMD² with KID's cubic kernel on the features
            standardized by the reference.
        """
        from genlab.metrics.drift import mmd2, standardize

        ref, win = standardize(reference["x"], window["x"])
        return {"mmd": mmd2(ref, win, origin)}


def read_artifact(files: Mapping[str, bytes], name: str, key: str, parse: Callable[[str], Any]) -> dict[str, Any]:
    """``{key: parse(text of files[name])}`` for :meth:`Modality.open_artifacts`, or ``{}`` when the run has no
    such file.

    Raises:
        DataError: for a file that ``parse`` cannot read (one line naming it).
    """
    if name not in files:
        return {}
    try:
        return {key: parse(files[name].decode("utf-8"))}
    except Exception as e:
        raise DataError(f"cannot read {name} ({str(e).splitlines()[0]})") from None


def likelihood_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """CLI rows of the likelihood part of a report (exact, an upper bound on NLL, or none)."""
    how = report.get("likelihood", "none")
    if how == "none":
        return [("likelihood", f"no likelihood ({report.get('note', '')})")]
    kind = "exact" if how == "exact" else "upper bound on NLL"
    return [("NLL (nats/example)", f"{report['nll_nats']:.2f} ± {report['nll_nats_sem']:.2f}"),
            ("bits/dim", f"{report['bits_per_dim']:.4f} ({kind})"), ("examples", str(report["n_examples"]))]


def fmt(v: Any, digits: int = 4) -> str:
    """A number for a table cell (``–`` for missing or non-finite)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


MODALITIES: Registry[Modality] = Registry("modality", builtins="genlab.modalities")
M = TypeVar("M", bound=type[Modality])


def register_modality(name: str) -> Callable[[M], M]:
    """Class decorator: register one instance of a :class:`Modality` subclass under ``name`` (sets ``kind``)."""
    inner = MODALITIES.register(name)

    def deco(cls: M) -> M:
        cls.kind = name
        if not cls.forms:
            raise ValueError(f"modality {name!r} declares no data forms")
        inner(cls())
        return cls

    return deco


def modality(kind: str) -> Modality:
    """The registered modality ``kind``.

    Raises:
        ConfigError: for an unknown kind.
    """
    import genlab.modalities  # noqa: F401  (registers the built-in modalities)

    return MODALITIES[kind]


def resolve_kind(data: str | None, forms: Sequence[str] | None = None) -> str:
    """The modality that serves ``--data data`` for a family modelling ``forms`` (None: any family).

    A built-in dataset names its kind; a path is claimed by the modality that claims it most strongly (ties:
    the first registered); no ``data`` means the first registered modality that produces ``forms[0]``.

    Raises:
        DataError: when the data is of a kind the family does not model, or no modality reads the path.
    """
    import genlab.modalities  # noqa: F401

    ordered = [m for _, m in MODALITIES.ordered()]
    fits = [m for m in ordered if forms is None or set(m.forms) & set(forms)]
    if data is None:
        first = [m for m in fits if forms is None or forms[0] in m.forms]
        if not first:
            raise DataError(f"no modality produces {forms[0] if forms else 'any'} data; give --data")
        return first[0].kind
    if data in DATASETS:
        kind = DATASETS[data].kind
        if all(m.kind != kind for m in fits):
            wanted = "/".join(forms or ())
            raise DataError(f"'{data}' is {kind} data but this family models {wanted} data; pick another --data")
        return kind
    p = Path(data).expanduser()
    if not p.exists():
        if any(sep in data for sep in "/\\.") or p.suffix:
            raise DataError(f"path {data} does not exist; give a built-in dataset, a folder or a file")
        raise DataError(f"unknown dataset '{data}'; choose one of: {', '.join(DATASETS)}, or give a folder or "
                        "file path")
    scores = [(m.claims(p), -i, m) for i, m in enumerate(fits)]
    best = max(scores, key=lambda s: (s[0], s[1]), default=None)
    if best is None or best[0] == 0:
        kinds = ", ".join(m.kind for m in fits) or "none"
        raise DataError(f"{data} is not data this family reads (kinds it models: {kinds})")
    return best[2].kind
