"""Samples of an exported model as files, with numpy + Pillow only: what ``genlab sample EXPORTED --out FILE`` writes.

A *writer* per data kind (the run's modality) turns the runtime's numpy samples into files and terminal text:
``image`` (PNG grid, ``.npz``), ``vector`` (PNG scatter, ``.npz``), ``text`` (``.txt``, printed). A kind without a
writer of its own (a modality added later) gets :class:`ArrayWriter`, which writes the raw arrays as ``.npz``;
register a better one with :func:`register_writer`. The tokenizer of token data is the folder's ``tokenizer.json``
read with :class:`genlab.data.vocab.Tokenizer` (torch-free, the ids training used).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from genlab.config import check
from genlab.data.vocab import TOKENIZER_FILE, Tokenizer
from genlab.errors import CapabilityError, ConfigError, DataError
from genlab.files import write_bytes


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def grid(images: np.ndarray, nrow: int | None = None, pad: int = 2, min_cell: int = 32) -> np.ndarray:
    """Tile ``uint8`` images ``(N, C, H, W)`` into one ``(rows·H', cols·W', C)`` array, small images upscaled by an
    integer factor (as :func:`genlab.report.grids.grid`)."""
    n, c, h, w = images.shape
    scale = max(1, math.ceil(min_cell / max(h, w)))
    x = images.repeat(scale, axis=2).repeat(scale, axis=3) if scale > 1 else images
    h, w = h * scale, w * scale
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    arr = x.transpose(0, 2, 3, 1)
    for i in range(n):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = arr[i]
    return out


def png_bytes(pixels: np.ndarray) -> bytes:
    """A ``(H, W)`` or ``(H, W, C)`` uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels).save(buf, "PNG")
    return buf.getvalue()


def scatter(points: np.ndarray, size: int = 256, pad: float = 0.05) -> np.ndarray:
    """2-D points ``(N, ≥2)`` as a gray density image (as :func:`genlab.report.grids.scatter`)."""
    p = np.asarray(points, dtype=np.float64).reshape(len(points), -1)[:, :2]
    p = p[np.isfinite(p).all(1)]
    if len(p) == 0:
        return np.full((size, size), 255, dtype=np.uint8)
    lo, hi = p.min(0), p.max(0)
    span = np.maximum(hi - lo, 1e-9)
    lo, span = lo - pad * span, span * (1 + 2 * pad)
    ij = np.clip(((p - lo) / span * (size - 1)).round().astype(int), 0, size - 1)
    counts = np.zeros((size, size))
    np.add.at(counts, (size - 1 - ij[:, 1], ij[:, 0]), 1.0)
    return (255 * (1 - np.sqrt(counts / counts.max()))).round().astype(np.uint8)


def load_tokenizer(folder: Path) -> Tokenizer:
    """The tokenizer of an exported folder (the run's own ``tokenizer.json``, same ids).

    Raises:
        DataError: when the folder has none or it cannot be read.
    """
    if not (folder / TOKENIZER_FILE).is_file():
        raise DataError(f"{folder} has no {TOKENIZER_FILE}; token models need it to encode and decode text")
    return Tokenizer.load(folder)


@dataclass(frozen=True)
class ImageOutputOptions:
    """Options of image sample files (``--nrow``), as the image modality's ``GridOptions``.

    Arguments:
        nrow: images per grid row (default: a square grid, or one row per class for per-class labels).
    """

    nrow: int | None = None

    def __post_init__(self) -> None:
        check(self.nrow is None or self.nrow > 0, "--nrow must be positive")


class Writer:
    """Writes the runtime's samples of one data kind; subclasses set the class constants and override methods."""

    formats: ClassVar[tuple[str, ...]] = ("npz",)
    options_cls: ClassVar[type | None] = None
    #: without ``--out`` the samples are printed
    prints: ClassVar[bool] = False
    #: one printed token sample is shown while it is generated (text)
    streams: ClassVar[bool] = False
    default_samples: ClassVar[int] = 64

    def __init__(self, folder: Path, manifest: Mapping[str, Any]) -> None:
        self.folder, self.manifest = folder, manifest

    def format_of(self, path: Path, fmt: str | None) -> str:
        """``fmt``, else the path's suffix, else the default format.

        Raises:
            ConfigError: for a format this kind cannot be written in.
        """
        chosen = fmt or path.suffix.lower().lstrip(".") or self.formats[0]
        if chosen not in self.formats:
            raise ConfigError(f"--format must be {' or '.join(self.formats)} for {self.manifest['kind']} data, "
                              f"got {chosen!r} (from {'--format' if fmt else path.name})")
        return chosen

    def write(self, samples: np.ndarray, path: Path, fmt: str, labels: np.ndarray | None,
              options: Mapping[str, Any]) -> Path:
        arrays = {"x": samples, **({"y": labels} if labels is not None else {})}
        return write_bytes(path, npz_bytes(arrays))

    def show(self, samples: np.ndarray) -> str:
        raise ConfigError(f"{self.manifest['kind']} samples cannot be printed; write them with --out FILE")

    def condition_prompt(self, condition: str) -> str:
        """The prompt that makes a token model sample under ``--condition`` (data kinds that take conditions).

        Raises:
            CapabilityError: for a kind (or a model) that takes no conditions; ConfigError for a bad condition.
        """
        raise CapabilityError(f"exported {self.manifest['kind']} models take no --condition")


class ArrayWriter(Writer):
    """Fallback for kinds without a writer: the raw arrays as ``.npz`` (``x``, and ``y`` for labels)."""


class ImageWriter(Writer):
    formats = ("png", "npz")
    options_cls = ImageOutputOptions

    def write(self, samples: np.ndarray, path: Path, fmt: str, labels: np.ndarray | None,
              options: Mapping[str, Any]) -> Path:
        if fmt == "npz":
            return super().write(samples, path, fmt, labels, options)
        nrow = options.get("nrow")
        if nrow is None and labels is not None and len(np.unique(labels)) > 1:
            nrow = int(self.manifest["spec"].get("num_classes") or 0) or None
        return write_bytes(path, png_bytes(grid(samples, nrow)))


class VectorWriter(Writer):
    formats = ("png", "npz")

    def write(self, samples: np.ndarray, path: Path, fmt: str, labels: np.ndarray | None,
              options: Mapping[str, Any]) -> Path:
        if fmt == "npz":
            return super().write(samples, path, fmt, labels, options)
        return write_bytes(path, png_bytes(scatter(samples)))


class TextWriter(Writer):
    formats = ("txt",)
    prints = True
    streams = True
    default_samples = 1

    def __init__(self, folder: Path, manifest: Mapping[str, Any]) -> None:
        super().__init__(folder, manifest)
        self.tokenizer = load_tokenizer(folder)

    def texts(self, samples: np.ndarray) -> list[str]:
        return [self.tokenizer.decode(row) for row in samples]

    def show(self, samples: np.ndarray) -> str:
        return "\n\n".join(f"--- sample {i} ---\n{t}" for i, t in enumerate(self.texts(samples))) + "\n"

    def write(self, samples: np.ndarray, path: Path, fmt: str, labels: np.ndarray | None,
              options: Mapping[str, Any]) -> Path:
        return write_bytes(path, self.show(samples).encode("utf-8"))


WRITERS: dict[str, type[Writer]] = {"image": ImageWriter, "vector": VectorWriter, "text": TextWriter}


def register_writer(kind: str) -> Callable[[type[Writer]], type[Writer]]:
    """Class decorator: the writer of samples of data kind ``kind`` (a modality's name)."""

    def deco(cls: type[Writer]) -> type[Writer]:
        if kind in WRITERS:
            raise ValueError(f"a writer for {kind!r} samples is already registered")
        WRITERS[kind] = cls
        return cls

    return deco


def writer_class(kind: str) -> type[Writer] | None:
    """The writer registered for data kind ``kind``, loading the kind's torch-free export module
    (``genlab.export.kinds.<kind>``) first when there is one; None for a kind without a writer."""
    if kind not in WRITERS:
        load_kind(kind)
    return WRITERS.get(kind)


def load_kind(kind: str, graphs: bool = False) -> None:
    """Import the export modules of data kind ``kind``, if it has them: ``genlab.export.kinds.<kind>`` (its writer
    and runtimes, torch-free) and, with ``graphs``, ``genlab.export.kinds.<kind>_graphs`` (its exporters, torch)."""
    import importlib.util

    for name in (kind, f"{kind}_graphs") if graphs else (kind,):
        module = f"genlab.export.kinds.{name}"
        if name.isidentifier() and importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def writer(folder: Path, manifest: Mapping[str, Any]) -> Writer:
    """The writer for an exported folder's data kind (:class:`ArrayWriter` for kinds without one)."""
    return (writer_class(str(manifest["kind"])) or ArrayWriter)(folder, manifest)
