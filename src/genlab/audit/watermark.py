"""Keyed watermarks embedded while sampling and detected with a statistical test.

* **Tree-Ring** (diffusion, images): the key is a pattern of concentric rings written into the centred 2-D Fourier
  transform of the initial noise ``x_T`` (one channel, radius ``r``); the sampler runs as usual. To detect, the
  image is mapped back to its noise by DDIM inversion and the masked Fourier coefficients ``y`` are compared with
  the key ``k``. Without a watermark ``y`` is white Gaussian noise (variance σ², estimated from the coefficients
  outside the mask), so ``η = Σ |k − y|² / (σ²/2)`` over the independent coefficients follows a noncentral χ² with
  ``2|M|`` degrees of freedom and noncentrality ``Σ k² / (σ²/2)``; the p-value is ``P(χ² ≤ η)`` (small = marked).
  That is the paper's distance test. The default ``correlation`` test is its matched-filter form: the whitened
  projection ``z = Σ m·u / √(Σ m²)`` of the recovered coefficients ``u = y / √(σ²/2)`` (real parts; the zero
  frequency with σ²) on the whitened key ``m`` is standard normal without a watermark, and the p-value is
  ``P(N(0, 1) ≥ z)``. Inversion rarely returns the key exactly but a shrunk, noisy copy ``y ≈ a·k + e``
  (``0 < a < 1``); the distance test counts the shrinkage and the extra noise against the key, the projection only
  asks that ``y`` point along it (the most powerful test against ``a > 0`` under white noise). Both p-values are
  exact only for white recovered noise; inverted unmarked images need not give it, so a threshold calibrated on
  unmarked samples of the model is the safer one.
  The ring values are real and the rings radially symmetric, so the key survives the real part taken after the
  inverse transform exactly (a Hermitian-symmetric spectrum).
* **Green list** (GPT, tokens): before each token the previous token and the key seed a permutation of the
  vocabulary; its first ``γ|V|`` tokens are green and get ``δ`` added to their logits. Text without the watermark
  has each token green with probability γ, so ``z = (|s|_G − γT) / √(Tγ(1−γ))`` over ``T`` scored tokens is
  standard normal; ``z > 4`` is the paper's detection threshold.

Keys are any string (hashed with SHA-256); they are secrets: never recorded in provenance manifests or logs.

References:
    Wen, Kirchenbauer, Geiping & Goldstein, "Tree-Ring Watermarks: Fingerprints for Diffusion Images that are
    Invisible and Robust", 2023, arXiv:2305.20030.
    Kirchenbauer, Geiping, Wen, Katz, Miers & Goldstein, "A Watermark for Large Language Models", 2023,
    arXiv:2301.10226.
"""

from __future__ import annotations

import hashlib
import math
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from genlab.core import Registry
from genlab.errors import CapabilityError, ConfigError, DataError

if TYPE_CHECKING:
    from genlab.run import Run

#: γ, the green share of the vocabulary (the paper's default)
GREEN_FRACTION = 0.25


def _seed(*parts: object) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def check_key(key: str | None) -> str:
    """A usable watermark key (a non-empty string).

    Raises:
        ConfigError: for an empty key.
    """
    if key is None or not str(key).strip():
        raise ConfigError("--watermark/--key must be a non-empty string (your secret watermark key)")
    return str(key)


# -- Tree-Ring -------------------------------------------------------------------------------------

#: the Tree-Ring detection tests (module doc): the matched filter and the paper's distance
TREE_RING_TESTS = ("correlation", "distance")


def check_tree_ring_test(test: str) -> str:
    """A Tree-Ring detection test of :data:`TREE_RING_TESTS`.

    Raises:
        ConfigError: for any other name.
    """
    if test not in TREE_RING_TESTS:
        raise ConfigError(f"unknown Tree-Ring --test '{test}'; choose one of: {', '.join(TREE_RING_TESTS)}")
    return test


class TreeRing:
    """A Tree-Ring key for images of shape ``(C, H, W)``.

    Arguments:
        key: the secret (any string).
        shape: ``(C, H, W)`` of the model's images.
        radius: ring radius in Fourier bins (default ``round(0.3 · min(H, W) / 2)``, the paper's 10 of 32 bins).
        channel: the channel carrying the key (the paper uses the last).

    References:
        Wen et al., 2023, arXiv:2305.20030 (Sec. 3, "Tree-Ring_Rings"; Sec. 4, the p-value test).
    """

    def __init__(self, key: str, shape: tuple[int, ...], radius: int | None = None, channel: int = -1) -> None:
        if len(shape) != 3:
            raise DataError(f"Tree-Ring watermarks need images (C, H, W), got shape {shape}")
        c, h, w = shape
        self.shape = (c, h, w)
        self.channel = channel % c
        self.radius = radius if radius is not None else max(1, round(0.3 * min(h, w) / 2))
        if not 1 <= self.radius < min(h, w) / 2:
            raise ConfigError(f"Tree-Ring radius must be in 1..{math.ceil(min(h, w) / 2) - 1}, got {self.radius}")
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cy, cx = h // 2, w // 2  # the zero frequency after fftshift
        dist = ((yy - cy) ** 2 + (xx - cx) ** 2).double().sqrt()
        self.mask = dist <= self.radius  # (H, W); symmetric under u -> -u, so the spectrum stays Hermitian
        g = torch.Generator().manual_seed(_seed("tree-ring", check_key(key)))
        values = torch.randn(self.radius + 1, generator=g, dtype=torch.float64)  # one real value per ring
        rings = torch.where(self.mask, values[dist.round().long().clamp(max=self.radius)], 0.0)  # (H, W)
        # Σ_M k² := |M|, its expectation: every key has the same strength (unscaled, λ was about 20 and 140 for two keys
        # at radius 4, so detection power was the luck of the key) and the noise keeps unit variance on average
        self.pattern = rings * math.sqrt(int(self.mask.sum()) / float(rings.pow(2).sum()))
        # one coefficient of each conjugate pair u, -u (the upper half plane and the right half of its middle row)
        self.independent = self.mask & ((yy < cy) | ((yy == cy) & (xx >= cx)))
        self.real_only = (yy == cy) & (xx == cx)  # the zero frequency is real

    @staticmethod
    def spectrum(x: Tensor) -> Tensor:
        """Centred orthonormal 2-D FFT ``(…, H, W)`` (white unit noise gives unit-variance coefficients)."""
        return torch.fft.fftshift(torch.fft.fft2(x.detach().double(), norm="ortho"), dim=(-2, -1))

    @staticmethod
    def image(f: Tensor) -> Tensor:
        """The real image ``(…, H, W)`` of a centred spectrum, the inverse of :meth:`spectrum` (exact for a
        Hermitian-symmetric one)."""
        return torch.fft.ifft2(torch.fft.ifftshift(f, dim=(-2, -1)), norm="ortho").real

    def embed(self, x: Tensor) -> Tensor:
        """Write the key into noise ``x (N, C, H, W)``: masked Fourier coefficients of the key channel := rings."""
        out = x.clone()
        f = self.spectrum(x[:, self.channel])
        f[:, self.mask] = self.pattern[self.mask].to(f)
        out[:, self.channel] = self.image(f).to(x.dtype)
        return out

    def noise(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        """Watermarked initial noise ``(n, C, H, W)``: Gaussian outside the key, the rings inside."""
        dev = generator.device if generator is not None else torch.device("cpu")
        x = torch.randn((n, *self.shape), generator=generator, device=dev)
        return self.embed(x).to(device)

    def _whitened(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(u, v, m)``: the real parts ``u (N, D)`` and imaginary parts ``v`` of the independent masked
        coefficients of ``x (N, C, H, W)`` and the key ``m (N, D)``, each divided by its standard deviation under
        white noise (σ² estimated outside the mask, per image; the zero frequency is real, with variance σ²)."""
        y = self.spectrum(x[:, self.channel].cpu())  # (N, H, W)
        sigma2 = y.abs().pow(2)[:, ~self.mask].mean(-1, keepdim=True)  # (N, 1), E|y|² of white noise
        cplx = self.independent & ~self.real_only
        s_c, s_r = (sigma2 / 2).sqrt(), sigma2.sqrt()  # sd of a real or imaginary part; of the real zero frequency
        u = torch.cat([y[:, cplx].real / s_c, y[:, self.real_only].real / s_r], -1)  # (N, D)
        m = torch.cat([self.pattern[cplx].expand(len(y), -1) / s_c,
                       self.pattern[self.real_only].expand(len(y), -1) / s_r], -1)  # (N, D)
        return u, y[:, cplx].imag / s_c, m

    def statistic(self, x: Tensor) -> tuple[np.ndarray, np.ndarray, int]:
        """``(η, noncentrality λ, degrees of freedom)`` of recovered noise ``x (N, C, H, W)`` (distance test)."""
        u, v, m = self._whitened(x)
        eta = (m - u).pow(2).sum(-1) + v.pow(2).sum(-1)
        return eta.numpy(), m.pow(2).sum(-1).numpy(), u.shape[1] + v.shape[1]

    def correlation(self, x: Tensor) -> np.ndarray:
        """``z`` per recovered noise ``x (N, C, H, W)``: its whitened projection on the key, N(0, 1) when
        unmarked (the matched-filter test of the module doc)."""
        u, _, m = self._whitened(x)
        return ((m * u).sum(-1) / m.pow(2).sum(-1).sqrt()).numpy()

    def p_values(self, x: Tensor, test: str = "correlation") -> np.ndarray:
        """p-value per recovered noise: the chance that unmarked noise lies this close to the key (``distance``,
        the paper's test) or points this far along it (``correlation``)."""
        from scipy.stats import ncx2, norm

        if check_tree_ring_test(test) == "correlation":
            return np.asarray(norm.sf(self.correlation(x)), dtype=np.float64)
        eta, lam, dof = self.statistic(x)
        return np.asarray(ncx2.cdf(eta, dof, lam), dtype=np.float64)


# -- green list -------------------------------------------------------------------------------------


class GreenList:
    """The green-list watermark of a vocabulary of ``vocab`` tokens.

    Arguments:
        key: the secret (any string).
        vocab: vocabulary size.
        gamma: green share γ.
        delta: logit bias δ added to green tokens while sampling.
        cache: green lists kept in memory (one per previous token).

    References:
        Kirchenbauer et al., 2023, arXiv:2301.10226 (Algorithm 2, soft red list; Sec. 4, the z-test).
    """

    def __init__(self, key: str, vocab: int, gamma: float = GREEN_FRACTION, delta: float = 2.0,
                 cache: int = 8192) -> None:
        if not 0 < gamma < 1:
            raise ConfigError(f"green fraction must be in (0, 1), got {gamma}")
        if not math.isfinite(delta) or delta < 0:
            raise ConfigError(f"--watermark-delta must be a finite number >= 0, got {delta}")
        self.key, self.vocab, self.delta = check_key(key), int(vocab), float(delta)
        self.n_green = max(1, round(gamma * self.vocab))
        self.gamma = self.n_green / self.vocab  # the exact share the z-test uses
        self._cache: OrderedDict[int, Tensor] = OrderedDict()
        self._size = cache

    def green(self, prev: int) -> Tensor:
        """Boolean ``(V,)`` mask of the tokens that are green after token ``prev``."""
        hit = self._cache.get(prev)
        if hit is not None:
            self._cache.move_to_end(prev)
            return hit
        g = torch.Generator().manual_seed(_seed("green-list", self.key, prev))
        mask = torch.zeros(self.vocab, dtype=torch.bool)
        mask[torch.randperm(self.vocab, generator=g)[: self.n_green]] = True
        self._cache[prev] = mask
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return mask

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        """Logits processor: add δ to the green tokens of each row (``history (B, L)``, ``logits (B, V)``)."""
        masks = torch.stack([self.green(int(p)) for p in history[:, -1].tolist()]).to(logits.device)
        return logits + self.delta * masks.to(logits.dtype)

    def score(self, ids: list[int] | Tensor, prev: int) -> dict[str, float]:
        """Green count, scored tokens, z-score and one-sided p-value of a token sequence that followed ``prev``."""
        seq = [int(t) for t in (ids.tolist() if isinstance(ids, Tensor) else ids)]
        prevs = [prev, *seq[:-1]]
        green = sum(bool(self.green(p)[t]) for p, t in zip(prevs, seq, strict=True) if 0 <= t < self.vocab)
        n = len(seq)
        z = (green - self.gamma * n) / math.sqrt(n * self.gamma * (1 - self.gamma)) if n else 0.0
        return {"tokens": n, "green": green, "green_share": green / n if n else 0.0, "z": z,
                "p_value": 0.5 * math.erfc(z / math.sqrt(2))}


# -- schemes: what `genlab detect-watermark` runs -----------------------------------------------------


class Scheme(ABC):
    """A watermark scheme a family embeds (``GenerativeModel.watermark``): how to read samples and detect it."""

    name: str = ""

    @abstractmethod
    def read(self, run: Run, path: Path) -> Any:
        """The samples a file holds, in the form :meth:`detect` takes.

        Raises:
            DataError: for a missing or unreadable file.
        """

    @abstractmethod
    def detect(self, run: Run, samples: Any, key: str, **options: Any) -> dict[str, Any]:
        """Per-sample scores and decisions: ``{"scheme", "n", "detected", "rate", "samples": [...], …}``."""


SCHEMES: Registry[Scheme] = Registry("watermark scheme")


def register_scheme(name: str) -> Callable[[type[Scheme]], type[Scheme]]:
    """Class decorator: register one instance of a :class:`Scheme` under ``name``."""
    inner = SCHEMES.register(name)

    def deco(cls: type[Scheme]) -> type[Scheme]:
        cls.name = name
        inner(cls())
        return cls

    return deco


def scheme_of(run: Run) -> Scheme:
    """The watermark scheme of a run's family.

    Raises:
        CapabilityError: for a family that embeds none.
    """
    name = type(run.model).watermark
    if not name:
        able = ", ".join(f"{n} ({c.watermark})" for n, c in _families() if c.watermark)
        raise CapabilityError(f"family '{run.family}' embeds no watermark; use a {able} run")
    return SCHEMES[name]


def _families() -> list[tuple[str, Any]]:
    from genlab.core import MODELS

    return MODELS.items()


def read_images(path: Path, shape: tuple[int, ...]) -> Tensor:
    """``uint8`` images ``(N, C, H, W)`` from an ``.npz`` (array ``x``), one image of the model's size, or a
    sample grid as ``genlab sample`` writes it (cells cut back out, the upscaling undone).

    Raises:
        DataError: for a missing or unreadable file, or images of another shape.
    """
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    c, h, w = shape
    if path.suffix.lower() == ".npz":
        from genlab.data.images import load_npz

        x = np.asarray(load_npz(path).x)
    else:
        from genlab.data.images import read_image

        arr = np.asarray(read_image(path).convert("L" if c == 1 else "RGB"), dtype=np.uint8)
        arr = arr[..., None] if arr.ndim == 2 else arr
        x = _ungrid(arr, (c, h, w), path)
    if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
        raise DataError(f"{path.name} holds images of shape {tuple(x.shape[1:])}, but the model makes {(c, h, w)}")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.uint8))


def _ungrid(arr: np.ndarray, shape: tuple[int, int, int], path: Path, pad: int = 2, min_cell: int = 32
            ) -> np.ndarray:
    """Images back out of a :func:`genlab.report.grids.grid` PNG (or one image of the model's size)."""
    _, h, w = shape
    if arr.shape[:2] == (h, w):
        return arr.transpose(2, 0, 1)[None]
    scale = max(1, math.ceil(min_cell / max(h, w)))
    ch, cw = h * scale, w * scale
    rows, cols = (arr.shape[0] - pad) / (ch + pad), (arr.shape[1] - pad) / (cw + pad)
    if not (rows.is_integer() and cols.is_integer() and rows >= 1 and cols >= 1):
        raise DataError(f"{path.name} is neither one {w}x{h} image nor a genlab sample grid of them; give the "
                        "samples as .npz (genlab sample RUN --format npz)")
    cells = []
    for r in range(int(rows)):
        for k in range(int(cols)):
            y0, x0 = pad + r * (ch + pad), pad + k * (cw + pad)
            cell = arr[y0 : y0 + ch : scale, x0 : x0 + cw : scale]
            if not (arr[y0 : y0 + ch, x0 : x0 + cw] == 255).all():  # unused cells of the last row are white
                cells.append(cell.transpose(2, 0, 1))
    return np.stack(cells)


@register_scheme("tree-ring")
class TreeRingScheme(Scheme):
    """Tree-Ring on a diffusion run: DDIM inversion with the unconditional model, then the p-value test."""

    def read(self, run: Run, path: Path) -> Tensor:
        return read_images(path, tuple(run.spec.shape))

    def detect(self, run: Run, samples: Any, key: str, *, steps: int = 50, alpha: float = 0.01,
               batch_size: int = 250, test: str = "correlation", **options: Any) -> dict[str, Any]:
        """Invert each image with ``steps`` DDIM steps and test it (``test``: ``correlation`` or
        ``distance``); detected where ``p < alpha``."""
        if options:
            raise ConfigError(f"Tree-Ring detection takes no option --{next(iter(options)).replace('_', '-')}")
        if not 0 < alpha < 1:
            raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
        check_tree_ring_test(test)  # before the inversion, which is the slow part
        x = torch.as_tensor(samples)
        ring = TreeRing(key, tuple(run.spec.shape))
        model: Any = run.model
        noise = torch.cat([model.invert(x[lo : lo + batch_size], steps=steps).cpu()
                           for lo in range(0, len(x), batch_size)])
        p = ring.p_values(noise, test)
        return {"scheme": self.name, "n": len(x), "steps": steps, "alpha": alpha, "radius": ring.radius, "test": test,
                "detected": int((p < alpha).sum()), "rate": float((p < alpha).mean()),
                "samples": [{"p_value": float(v), "detected": bool(v < alpha)} for v in p]}


_HEADER = re.compile(r"^--- sample \d+ ---\n", re.MULTILINE)


def split_samples(text: str) -> list[str]:
    """The samples of a text file as ``genlab sample`` writes them (``--- sample i ---`` headers), else the file."""
    if not _HEADER.match(text):
        return [text]
    parts = _HEADER.split(text)[1:]
    return [p[:-2] if p.endswith("\n\n") else p[:-1] if p.endswith("\n") else p for p in parts]


@register_scheme("green-list")
class GreenListScheme(Scheme):
    """The green-list watermark on a token run: re-tokenize each text, z-test its tokens."""

    def read(self, run: Run, path: Path) -> list[list[int]]:
        if not path.is_file():
            raise DataError(f"{path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path.name} is not UTF-8 text") from None
        from genlab.modalities.text import run_tokenizer

        tok = run_tokenizer(run)
        return [tok.encode(t).tolist() for t in split_samples(text)]

    def detect(self, run: Run, samples: Any, key: str, *, threshold: float = 4.0,
               **options: Any) -> dict[str, Any]:
        """z-score per sequence (token ids, after the start token); detected where ``z > threshold``."""
        if options:
            raise ConfigError(f"green-list detection takes no option --{next(iter(options)).replace('_', '-')}")
        bos = int(getattr(run.model.config, "bos_id", 0))
        rows = samples.tolist() if isinstance(samples, Tensor) else list(samples)
        gl = GreenList(key, run.spec.levels)
        scores = [gl.score(r, bos) for r in rows]
        hits = [s["z"] > threshold for s in scores]
        return {"scheme": self.name, "n": len(rows), "threshold": threshold, "gamma": gl.gamma,
                "detected": int(sum(hits)), "rate": float(np.mean(hits)) if hits else 0.0,
                "samples": [{**s, "detected": h} for s, h in zip(scores, hits, strict=True)]}


def detect(source: Run | str | Path, samples: Any, key: str, **options: Any) -> dict[str, Any]:
    """Test samples for the watermark of ``key`` with the scheme of the run's family.

    Arguments:
        source: the run (or its folder) that is suspected to have made the samples.
        samples: a file path (``.npz``/``.png`` images, ``.txt`` text) or samples as ``sample()`` returns them.
        key: the watermark key.
        **options: scheme options (Tree-Ring: ``steps``, ``alpha``; green list: ``threshold``).

    Raises:
        CapabilityError: for a family without a watermark; DataError for unreadable samples.
    """
    from genlab.api import as_run

    run = as_run(source)
    scheme = scheme_of(run)
    key = check_key(key)
    if isinstance(samples, str | Path):
        samples = scheme.read(run, Path(samples))
    return scheme.detect(run, samples, key, **options)
