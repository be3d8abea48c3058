"""The contract every generative family keeps, and the registries of families and datasets.

A family is an ``nn.Module`` with a frozen config dataclass beside it. The trainer drives any family through
:meth:`GenerativeModel.param_groups` and :meth:`GenerativeModel.loss` and never branches on the family; callers ask
the capability flags (``exact_likelihood``, ``likelihood_bound``, ``latent_space``) instead of catching errors.

Data representation (see ``genlab.data.images``): image batches hold 8-bit pixels as ``uint8`` tensors of shape
``(B, C, H, W)``; ``sample()`` returns the same representation, and ``log_prob()`` returns the log-probability in
nats of the *discrete* 8-bit data, so bits/dim are comparable across families.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import torch
from torch import Tensor, nn

from genlab.errors import CapabilityError, ConfigError, DataError

if TYPE_CHECKING:
    from genlab.data import Dataset

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data.

    Arguments:
        kind: the modality that loaded the data, e.g. ``"image"`` or ``"text"`` (``genlab.MODALITIES``).
        shape: shape of one example, e.g. ``(1, 28, 28)`` for MNIST or ``(block_size,)`` for token windows.
        num_classes: number of labels, 0 for unlabelled data.
        class_names: human-readable label names (length ``num_classes``).
        form: the representation a family sees (``"image"``: ``uint8 (C, H, W)``; ``"vector"``: ``float32 (D,)``;
            ``"tokens"``: ``int64 (T,)`` ids). Families declare the forms they model, modalities the forms they
            produce, so a new modality with a known form works with every family of that form.
        levels: number of discrete values one element takes (256 for 8-bit pixels, the vocabulary size for
            tokens), 0 for continuous data.
        info: modality-owned details a family may need (JSON-able), e.g. a table's column layout.
    """

    kind: str
    shape: tuple[int, ...]
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    form: str = ""
    levels: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.form:
            object.__setattr__(self, "form", self.kind)

    @property
    def dims(self) -> int:
        """Number of scalar dimensions in one example (the D of bits/dim)."""
        return math.prod(self.shape)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any], default_form: str = "") -> DataSpec:
        """Inverse of :meth:`to_json`; also reads specs written before ``form``/``levels`` existed (a token run's
        ``vocab_size`` is its ``levels``; ``default_form`` is the modality's first form)."""
        return cls(kind=d["kind"], shape=tuple(d["shape"]), num_classes=int(d.get("num_classes", 0)),
                   class_names=tuple(d.get("class_names", ())), form=str(d.get("form") or default_form),
                   levels=int(d.get("levels", d.get("vocab_size", 0))), info=dict(d.get("info", {})))


@dataclass
class Batch:
    """One (micro-)batch as a family sees it.

    Besides data and labels a batch hands out training noise that depends only on the global example index, the
    step and the order of requests: ``batch.randn(...)`` gives the same numbers for an example whether it sits in a
    single-process batch, in one rank's shard under DDP, or in a micro-batch of an accumulated step. That makes
    resumed and distributed runs reproduce single-process runs exactly.

    Arguments:
        x: data, e.g. ``uint8`` images ``(B, C, H, W)``.
        y: integer labels ``(B,)`` or None.
        seed: per-step seed for training noise.
        offset: index of this batch's first example within the global (all-rank) micro-batch.
        global_size: size of the global micro-batch the noise is drawn for.
    """

    x: Tensor
    y: Tensor | None = None
    seed: int = 0
    offset: int = 0
    global_size: int | None = None
    _calls: int = field(default=0, repr=False)

    def __len__(self) -> int:
        return self.x.shape[0]

    def _generator(self) -> torch.Generator:
        self._calls += 1
        digest = hashlib.blake2b(f"{self.seed}:{self._calls}".encode(), digest_size=8).digest()
        g = torch.Generator(device=self.x.device)
        g.manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
        return g

    def _noise(self, fn: Callable[..., Tensor], shape: tuple[int, ...]) -> Tensor:
        total = self.global_size or len(self)
        full = fn((total, *shape), generator=self._generator(), device=self.x.device)
        return full[self.offset : self.offset + len(self)]

    def randn(self, *shape: int) -> Tensor:
        """Standard normal noise of shape ``(B, *shape)``, reproducible per example."""
        return self._noise(torch.randn, shape)

    def rand(self, *shape: int) -> Tensor:
        """Uniform [0, 1) noise of shape ``(B, *shape)``, reproducible per example."""
        return self._noise(torch.rand, shape)

    def to(self, device: torch.device | str) -> Batch:
        return dataclasses.replace(self, x=self.x.to(device), y=None if self.y is None else self.y.to(device))


Likelihood = Literal["exact", "bound", "none"]


class GenerativeModel(nn.Module, ABC):
    """Abstract base of every family.

    Subclasses set ``config_cls`` and the capability flags, and implement ``loss``, ``sample`` and (when a
    likelihood flag is set) ``log_prob``. ``forward(batch, group)`` calls ``loss`` so the model can be wrapped in
    ``DistributedDataParallel``. Capabilities are class constants; where one differs by the form of the data
    (a flow's likelihood is a bound on images, exact on vectors) the family declares it per form.
    """

    family: ClassVar[str] = ""
    config_cls: ClassVar[type]
    #: data representations the family models (``DataSpec.form``): "image", "vector", "tokens", …
    data_forms: ClassVar[tuple[str, ...]] = ("image",)
    exact_likelihood: ClassVar[bool] = False
    likelihood_bound: ClassVar[bool] = False
    #: ``--precision auto`` may train it in bf16 where the device runs bf16 natively (False: always fp32 under auto)
    bf16_auto: ClassVar[bool] = True
    latent_space: ClassVar[bool] = False
    #: how to walk between two latent codes (:meth:`to_latent`): ``slerp`` for codes that are standard Gaussian
    #: under the prior (VAE posterior means, DDIM-inverted noise), ``linear`` otherwise
    latent_path: ClassVar[Literal["slerp", "linear"]] = "slerp"
    #: predicts class labels of data (:meth:`classify`), e.g. the semi-supervised VAE's q(y | x)
    classifies: ClassVar[bool] = False
    #: removes Gaussian noise of a known level from given data by its own reverse process (:meth:`denoise`)
    denoising: ClassVar[bool] = False
    #: fills a masked part of given data (:meth:`inpaint`)
    inpainting: ClassVar[bool] = False
    #: yields samples piece by piece while generating them (:meth:`stream`)
    streaming: ClassVar[bool] = False
    #: forms on which :meth:`inpaint` works when that differs from ``inpainting`` (e.g. a GAN fills given table
    #: columns through its conditional vector but cannot inpaint images): ``{"table": True}``
    inpainting_by_form: ClassVar[dict[str, bool]] = {}
    #: per-form exceptions to ``latent_space`` (e.g. diffusion has DDIM-inverted latents of images only)
    latent_by_form: ClassVar[dict[str, bool]] = {}
    #: how the likelihood differs by data form when it does, e.g. ``{"image": "bound", "vector": "exact"}``
    likelihood_by_form: ClassVar[dict[str, Likelihood]] = {}
    #: the param group whose loss must fall when the family learns (the contract test checks it)
    progress_group: ClassVar[str] = "main"
    #: trainer-config defaults that suit this family; the user's settings still win
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: values of model options added after runs were first written, for run folders whose ``config.json``
    #: predates them (e.g. a default that changed): ``{option: value those runs were trained with}``
    legacy_options: ClassVar[dict[str, Any]] = {}
    #: optional frozen dataclass of sampling-time options (e.g. sampler, steps, guidance); its fields become
    #: keyword arguments of ``sample`` and ``--field-name`` options of ``genlab sample``
    sample_options_cls: ClassVar[type | None] = None
    #: the watermark ``sample(..., watermark=KEY)`` embeds (:mod:`genlab.audit.watermark`): ``tree-ring``,
    #: ``green-list``; empty: none
    watermark: ClassVar[str] = ""
    #: param groups whose loss reads the training data: DP-SGD (``--dp-epsilon``) privatizes exactly these;
    #: empty: the family cannot train with differential privacy
    private_groups: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, spec: DataSpec) -> None:
        super().__init__()
        if spec.form not in self.data_forms:
            raise DataError(f"family '{self.family}' models {'/'.join(self.data_forms)} data, "
                            f"not {spec.kind} data ({spec.form}); pick a dataset of that kind")
        self.config = config
        self.spec = spec

    @classmethod
    def likelihood_for(cls, form: str) -> Likelihood:
        """What ``log_prob`` is on data of ``form``: ``exact``, a ``bound`` on log P, or ``none``."""
        if form in cls.likelihood_by_form:
            return cls.likelihood_by_form[form]
        return "exact" if cls.exact_likelihood else "bound" if cls.likelihood_bound else "none"

    @classmethod
    def inpaints(cls, form: str) -> bool:
        """Whether :meth:`inpaint` fills given data of ``form`` (see ``inpainting_by_form``)."""
        return cls.inpainting_by_form.get(form, cls.inpainting)

    @classmethod
    def latent_for(cls, form: str) -> bool:
        """Whether :meth:`to_latent` / :meth:`from_latent` work on data of ``form`` (see ``latent_by_form``)."""
        return cls.latent_by_form.get(form, cls.latent_space)

    @property
    def has_latent_space(self) -> bool:
        """Whether this model, on its data, maps to a latent code and back (see :meth:`latent_for`)."""
        return self.latent_for(self.spec.form)

    @property
    def likelihood(self) -> Likelihood:
        """What ``log_prob`` is on this model's data (see :meth:`likelihood_for`)."""
        return self.likelihood_for(self.spec.form)

    def attach(self, artifacts: Mapping[str, Any]) -> None:
        """Take the run's artifacts a family needs beside its weights (e.g. a tokenizer); the default needs none."""

    @property
    def conditional(self) -> bool:
        """True when the model was built to take class labels."""
        return bool(getattr(self.config, "conditional", False)) and self.spec.num_classes > 0

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        return self.loss(batch, group)

    @abstractmethod
    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        """Scalar training loss for one param group, plus floats to log."""

    @abstractmethod
    def sample(self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples in the data representation (``uint8`` images for image data)."""

    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Log-probability in nats of each example of discrete data ``x``: exact, or the bound the family states."""
        raise CapabilityError(f"family '{self.family}' has no likelihood; use sample-based metrics instead")

    def ranking_log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """``log_prob`` for ranking examples against each other (anomaly scores): the same values, except where a
        family's estimate is random per example — then the randomness is drawn once for all examples (common
        random numbers), so differences between examples are not drowned in the estimator's own noise."""
        return self.log_prob(x, cond)

    def inpaint(self, x: Tensor, keep: Tensor, cond: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> Tensor:
        """Samples equal to ``x`` where ``keep`` is True, filled in elsewhere (families with ``inpainting``)."""
        raise CapabilityError(f"family '{self.family}' cannot inpaint")

    def denoise(self, noisy: Tensor, sigma: float, cond: Tensor | None = None, *,
                generator: torch.Generator | None = None, consistency: float = 0.0) -> Tensor:
        """Clean data from ``noisy`` = data + N(0, σ²) (families with ``denoising``).

        Arguments:
            noisy: noisy data as floats on the data's unit scale (8-bit images: pixel / 255, not clipped).
            sigma: standard deviation of the noise on that scale.
            cond: labels for a conditional model (None: unconditional).
            generator: source of all noise.
            consistency: weight of the observation against the model's own estimate (0 = none).

        A family adds its sampling options as keyword arguments.
        """
        raise CapabilityError(f"family '{self.family}' cannot denoise by itself")

    def stream(self, n: int, *, generator: torch.Generator | None = None) -> Iterator[Tensor]:
        """Generate ``n`` samples piece by piece, yielding each new piece (families with ``streaming``; token
        families yield ``(n,)`` new ids per step)."""
        raise CapabilityError(f"family '{self.family}' cannot stream its samples")

    def classify(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, num_classes)`` of data ``x`` (families with ``classifies``)."""
        raise CapabilityError(f"family '{self.family}' does not classify; train an ssvae for a classifier")

    def to_latent(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """A deterministic latent code ``(B, …)`` of data ``x`` (families with ``latent_space``): the posterior mean
        of a VAE, a flow's forward map, a diffusion model's DDIM inversion; :meth:`from_latent` maps it back."""
        raise CapabilityError(f"family '{self.family}' has no latent space to encode data into")

    def from_latent(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """Data in the data representation from latent codes ``z`` as :meth:`to_latent` makes them."""
        raise CapabilityError(f"family '{self.family}' has no latent space to decode from")

    def training_data(self, train: Dataset) -> Dataset:
        """The split the trainer draws batches from, given the loaded training split; the default is the split
        itself (the semi-supervised VAE hides all but ``--labels N`` of its labels here)."""
        return train

    @classmethod
    def sample_option_names(cls) -> frozenset[str]:
        """Names of the sampling options the family takes (the fields of ``sample_options_cls``; none without one)."""
        options = cls.sample_options_cls
        return frozenset(f.name for f in dataclasses.fields(options)) if options is not None else frozenset()

    @classmethod
    def resolve_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Fill in options implied by others before they are validated (e.g. the architecture of the run an
        ``init_from`` option names); the default changes nothing."""
        return options

    def start_from(self, source: str) -> None:
        """Load pretrained weights from ``source`` before training (families with an ``init_from`` option)."""
        raise CapabilityError(f"family '{self.family}' cannot start from pretrained weights")

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimizer group; one optimizer per group, stepped in this order each training step."""
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    # -- helpers shared by families --------------------------------------------------------------
    def check_cond(self, n: int, cond: Tensor | None, generator: torch.Generator | None) -> Tensor | None:
        """Validate requested labels; draw uniform labels for a conditional model when none are given."""
        if not self.conditional:
            if cond is not None:
                raise CapabilityError(f"this {self.family} model is unconditional; drop the label")
            return None
        k = self.spec.num_classes
        if cond is None:
            dev = generator.device if generator else "cpu"
            prior = self.spec.info.get("class_prior")
            if prior is not None:  # the data's label frequencies (a table's target), else uniform labels
                p = torch.as_tensor(prior, dtype=torch.float64, device=dev)
                return torch.multinomial(p, n, replacement=True, generator=generator).to(self.device)
            return torch.randint(0, k, (n,), generator=generator, device=dev).to(self.device)
        cond = torch.as_tensor(cond, dtype=torch.long, device=self.device).reshape(-1)
        if cond.numel() == 1:
            cond = cond.expand(n)
        if cond.numel() != n:
            raise ConfigError(f"got {cond.numel()} labels for {n} samples; give one label or one per sample")
        if cond.min() < 0 or cond.max() >= k:
            raise ConfigError(f"label {int(cond.max() if cond.max() >= k else cond.min())} is out of range; "
                              f"this model has classes 0..{k - 1}")
        return cond


T = TypeVar("T")


class Registry(Generic[T]):
    """Name → object registry with a decorator and checked names (cf. torch-fidelity's ``registry.py``)."""

    def __init__(self, what: str, builtins: str | None = None) -> None:
        """Arguments: ``what`` the kind of entry (for messages); ``builtins`` a module whose import registers the
        built-in entries, imported on the registry's first use (so importing one genlab module never needs
        ``import genlab`` first to see them)."""
        self.what = what
        self._items: dict[str, T] = {}
        self._builtins = builtins

    def _ensure(self) -> None:
        if self._builtins is not None:
            module, self._builtins = self._builtins, None
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        self._ensure()  # built-ins first: lookups that break ties by registration order prefer them
        if not _NAME.match(name):
            raise ValueError(f"invalid {self.what} name {name!r}: use lowercase letters, digits, '-' or '_'")

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> T:
        """Remove ``name`` (e.g. a plug-in registered for one test) and return what was registered.

        Raises:
            ConfigError: for a name that is not registered.
        """
        obj = self[name]
        del self._items[name]
        return obj

    def __getitem__(self, name: str) -> T:
        self._ensure()
        if name not in self._items:
            raise ConfigError(f"unknown {self.what} '{name}'; choose one of: {', '.join(sorted(self._items))}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return iter(sorted(self._items))

    def __len__(self) -> int:
        self._ensure()
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs sorted by name."""
        self._ensure()
        return sorted(self._items.items())

    def ordered(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs in registration order."""
        self._ensure()
        return list(self._items.items())


@dataclass(frozen=True)
class BuiltinDataset:
    """A registered built-in dataset: its modality and the loader of its raw contents.

    Arguments:
        name: registered name (``--data NAME``).
        kind: the modality that loads it (``genlab.MODALITIES``).
        load: zero-argument function returning the raw data the modality reads.
    """

    name: str
    kind: str
    load: Callable[[], Any]

    @property
    def about(self) -> str:
        """First line of the loader's docstring."""
        return (self.load.__doc__ or "").strip().splitlines()[0] if self.load.__doc__ else ""

    def __call__(self) -> Any:
        return self.load()


MODELS: Registry[type[GenerativeModel]] = Registry("family", builtins="genlab.models")
DATASETS: Registry[BuiltinDataset] = Registry("dataset", builtins="genlab.modalities")


def register_model(name: str) -> Callable[[type[GenerativeModel]], type[GenerativeModel]]:
    """Class decorator: register a family under ``name`` (also sets ``cls.family``)."""
    inner = MODELS.register(name)

    def deco(cls: type[GenerativeModel]) -> type[GenerativeModel]:
        cls.family = name
        return inner(cls)

    return deco


F = TypeVar("F", bound=Callable[[], Any])


def register_dataset(name: str, *, kind: str) -> Callable[[F], F]:
    """Function decorator: register a built-in dataset loader under ``name``, loaded by the modality ``kind``."""
    inner = DATASETS.register(name)

    def deco(fn: F) -> F:
        inner(BuiltinDataset(name, kind, fn))
        return fn

    return deco


def datasets_of(kind: str) -> list[str]:
    """Names of the built-in datasets of modality ``kind``."""
    return [n for n, d in DATASETS.items() if d.kind == kind]
