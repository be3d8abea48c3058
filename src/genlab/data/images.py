"""Image machinery shared by the image modality and the image families: pixel mappings, reading folders of
PNG/JPEG and ``.npz`` arrays, resizing, channels and augmentation.

Representation and the one mapping to model space
-------------------------------------------------
Pixels stay 8-bit integers (``uint8``, shape ``(N, C, H, W)``) underneath. Families map them to model space with
the two functions here and nothing else:

* :func:`to_model` — ``v = k / 127.5 - 1`` maps pixel ``k ∈ {0..255}`` onto ``[-1, 1]`` (VAE, GAN, diffusion);
* :func:`dequantize` — ``v = (k + u) / 128 - 1`` with ``u ~ U[0, 1)`` (continuous-density families, e.g. flows).

Bits/dim is always reported for the discrete 8-bit data: ``-log2 P(k) / D``. A continuous density ``p`` on the
dequantized values gives ``log P(k) ≥ E_u[log p(v)] + D · log(2/256)`` (:data:`DEQUANT_LOG_BIN`, the log-volume
of one pixel's bin in model space), so flows report a bound on the same quantity that discrete-likelihood families
(VAE decoder, PixelCNN) report directly.

User data: a folder of PNG/JPEG images (class = name of the immediate subfolder; images directly in the folder are
unlabelled), or an ``.npz`` with ``x`` (``uint8`` or floats in [0, 1]; NHW, NHWC or NCHW) and optional ``y``
(and optional ``x_test``/``y_test``). User data is split per class by a fixed seeded permutation
(``--test-fraction``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.core import DATASETS, datasets_of
from genlab.errors import DataError

#: log-volume of one 8-bit bin in model space after :func:`dequantize` (per dimension)
DEQUANT_LOG_BIN = math.log(2.0 / 256.0)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def to_model(x: Tensor) -> Tensor:
    """Map ``uint8`` pixels to floats in [-1, 1]: ``k / 127.5 - 1``."""
    return x.float() / 127.5 - 1.0


def dequantize(x: Tensor, u: Tensor) -> Tensor:
    """Uniformly dequantize ``uint8`` pixels into [-1, 1): ``(k + u) / 128 - 1`` with ``u ∈ [0, 1)``."""
    return (x.float() + u) / 128.0 - 1.0


def to_uint8(v: Tensor) -> Tensor:
    """Inverse of :func:`to_model`, rounding and clamping to 0..255."""
    return ((v.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


@dataclass
class RawImages:
    """Images before preprocessing: ``uint8`` NCHW arrays, optional labels, optional fixed test split."""

    x: np.ndarray
    y: np.ndarray | None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    source: str = ""


def split_by_class(y: np.ndarray, test_share: float, tail: bool) -> np.ndarray:
    """Boolean test mask: per class, the last (``tail``) or a seeded random ``ceil(share · n)`` examples."""
    mask = np.zeros(len(y), dtype=bool)
    rng = np.random.default_rng(0)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if not tail:
            idx = rng.permutation(idx)
        k = max(1, math.ceil(test_share * len(idx))) if len(idx) > 1 else 0
        mask[idx[len(idx) - k :] if tail else idx[:k]] = True
    return mask


def read_image(path: Path) -> Any:
    """A PIL image read fully into memory.

    Raises:
        DataError: when the file is not a readable image, naming it.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path} ({type(e).__name__}); fix or remove the file") from None


def _square(im: Any, size: int) -> Any:
    from PIL import Image

    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return im.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BILINEAR)


def load_folder(root: Path, size: int | None, channels: int | None) -> RawImages:
    """Read a folder of PNG/JPEG images; class = immediate subfolder name."""
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    labelled = [(d.name, sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
                for d in subdirs]
    labelled = [(name, fs) for name, fs in labelled if fs]
    if files and labelled:
        raise DataError(f"{root} has images both at its top level and in class subfolders; "
                        "put every image in a class subfolder, or none")
    if not files and not labelled:
        raise DataError(f"{root} holds no .png/.jpg/.jpeg images; point --data at a folder of images")
    items = [(p, None) for p in files] if files else [(p, i) for i, (_, fs) in enumerate(labelled) for p in fs]
    images = [read_image(p) for p, _ in items]
    if channels is None:
        channels = 1 if all(im.mode in ("L", "1", "I;16", "I") for im in images) else 3
    mode = "L" if channels == 1 else "RGB"
    if size is None:
        sizes = {im.size for im in images}
        if len(sizes) > 1:
            (a, pa), (b, pb) = [(s, next(p for (p, _), im in zip(items, images, strict=True) if im.size == s))
                                for s in sorted(sizes)[:2]]
            raise DataError(f"images differ in size ({a[0]}x{a[1]} in {pa.name}, {b[0]}x{b[1]} in {pb.name}); "
                            "pass --size N to resize them all")
        if images[0].size[0] != images[0].size[1]:
            raise DataError(f"images are not square ({images[0].size[0]}x{images[0].size[1]}); "
                            "pass --size N to center-crop and resize them")
    arr = [np.asarray(_square(im.convert(mode), size) if size else im.convert(mode), dtype=np.uint8)
           for im in images]
    x = np.stack(arr)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    y = np.array([c for _, c in items], dtype=np.int64) if labelled else None
    names = tuple(n for n, _ in labelled)
    return RawImages(np.ascontiguousarray(x), y, class_names=names, source=str(root))


def to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """``uint8`` NCHW images from NHW, NHWC or NCHW arrays of ``uint8``, integers in 0..255 or floats in [0, 1].

    Raises:
        DataError: for other shapes, values out of range, NaN or a non-numeric dtype (naming ``what``).
    """
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise DataError(f"{what} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"{what} holds integers outside 0..255; store 8-bit pixels")
        return np.ascontiguousarray(x.astype(np.uint8))
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"{what} holds NaN or infinite values; store 8-bit pixels or finite floats in [0, 1]")
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{what} holds floats outside [0, 1]; store 8-bit pixels or floats in [0, 1]")
        return np.ascontiguousarray(np.round(x * 255).astype(np.uint8))
    raise DataError(f"{what} has dtype {x.dtype}; store uint8 pixels")


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise DataError(f"{what} must hold {n} non-negative integer labels")
    return y.astype(np.int64)


def load_npz(path: Path) -> RawImages:
    """Read ``x`` (and optional ``y``, ``x_test``, ``y_test``) from an ``.npz`` file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as .npz ({str(e).splitlines()[0]})") from None
    if "x" not in arrays:
        raise DataError(f"{path} has no array named 'x' (found: {', '.join(arrays) or 'nothing'})")
    x = to_nchw(arrays["x"], f"{path.name}:x")
    if len(x) == 0:
        raise DataError(f"{path.name}:x is empty")
    y = _labels(arrays["y"], len(x), f"{path.name}:y") if "y" in arrays else None
    xt = to_nchw(arrays["x_test"], f"{path.name}:x_test") if "x_test" in arrays else None
    yt = _labels(arrays["y_test"], len(xt), f"{path.name}:y_test") if xt is not None and "y_test" in arrays else None
    return RawImages(x, y, xt, yt, source=str(path))


def resize(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    t = torch.from_numpy(x).float()
    h, w = t.shape[-2:]
    s = min(h, w)
    t = t[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=s > size, align_corners=False)
    return t.round().clamp(0, 255).to(torch.uint8).numpy()


def set_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 1:  # ITU-R 601 luma, as PIL's "L"
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]
        return np.round((x.astype(np.float32) * w).sum(1, keepdims=True)).clip(0, 255).astype(np.uint8)
    return np.repeat(x, 3, axis=1)


def augmenter(shift: int = 0, crop: float = 0.0, flip: bool = False) -> Any:
    """A function ``(x uint8 (B,C,H,W), generator) -> x`` applying the switched-on augmentations, or None.

    Arguments:
        shift: random translation by up to this many pixels (edges replicated); 0 = off.
        crop: random crops keeping at least this fraction of the side, resized back; 0 = off.
        flip: random horizontal flips.
    """
    if not (shift or crop or flip):
        return None

    def augment(x: Tensor, g: torch.Generator) -> Tensor:
        b, _, h, w = x.shape
        if crop:
            out = torch.empty_like(x)
            scales = crop + (1 - crop) * torch.rand(b, generator=g)
            for i in range(b):
                ch, cw = max(1, round(h * float(scales[i]))), max(1, round(w * float(scales[i])))
                top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
                left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
                patch = x[i : i + 1, :, top : top + ch, left : left + cw].float()
                out[i] = F.interpolate(patch, size=(h, w), mode="bilinear", align_corners=False)[0].round().to(x.dtype)
            x = out
        if shift:
            s = shift
            padded = F.pad(x.float(), (s, s, s, s), mode="replicate").to(x.dtype)
            offs = torch.randint(0, 2 * s + 1, (b, 2), generator=g)
            x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offs.tolist())])
        if flip:
            flipped = torch.rand(b, generator=g) < 0.5
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
        return x

    return augment


def load_raw(data: str, size: int | None = None, channels: int | None = None) -> RawImages:
    """Resolve ``data`` to raw images: a built-in name, a folder, or an ``.npz`` file.

    Raises:
        DataError: for an unknown name, a missing path, or unreadable/inconsistent contents.
    """
    if data in DATASETS:
        if DATASETS[data].kind != "image":
            raise DataError(f"'{data}' is {DATASETS[data].kind} data, not images; image built-ins: "
                            f"{', '.join(datasets_of('image'))}")
        return DATASETS[data]()
    p = Path(data).expanduser()
    if p.is_dir():
        return load_folder(p, size, channels)
    if p.is_file():
        if p.suffix.lower() == ".npz":
            return load_npz(p)
        raise DataError(f"{p} is a file but not an .npz; give a built-in name, a folder of images or an .npz")
    if any(sep in data for sep in "/\\.") or p.suffix:
        raise DataError(f"path {data} does not exist; give a built-in dataset, a folder of images or an .npz file")
    raise DataError(f"unknown dataset '{data}'; choose one of: {', '.join(DATASETS)}, or give a folder or .npz path")
