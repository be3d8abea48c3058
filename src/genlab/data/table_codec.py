"""Torch-free half of :mod:`genlab.data.tables`: the fitted per-column transforms of a table (``table.json``), its
block layout, and decoding of ``table`` rows and ``tokens`` rows (numpy arrays) back to a DataFrame — what the
exported runtime needs to write table samples without PyTorch. :mod:`genlab.data.tables` re-exports everything here
and adds the torch side (dense one-hot batches, token tensors, the training dataset).

References:
    Xu et al., "Modeling Tabular Data using Conditional GAN" (CTGAN, TVAE), 2019, arXiv:1907.00503
    (mode-specific normalisation).
    Kotelnikov et al., "TabDDPM: Modelling Tabular Data with Diffusion Models", 2023, arXiv:2209.15421
    (quantile transform of numbers).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

from genlab.extras import require

if TYPE_CHECKING:
    import pandas as pd

Kind = Literal["continuous", "integer", "categorical", "boolean", "datetime"]
NUMERIC_KINDS = ("continuous", "integer", "datetime")
#: quantiles kept per number for the quantile transform (as scikit-learn's QuantileTransformer)
N_QUANTILES = 1000
_EPS = 1e-7


def pandas() -> Any:
    """The pandas module, or a one-line error naming the ``tabular`` extra."""
    return require("pandas", "tabular", "tabular data")


def _plain(v: Any) -> Any:
    """A JSON-able Python scalar from a pandas/numpy value (None for missing)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    try:
        if pandas().isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


# -- column types ------------------------------------------------------------------------------------

@dataclass
class ColumnInfo:
    """What genlab knows about one column (JSON-able, stored in the run's ``table.json``).

    Arguments:
        name: column name.
        kind: ``continuous``, ``integer``, ``categorical``, ``boolean`` or ``datetime``.
        dtype: the original pandas dtype (restored on samples).
        categories: the category set (categorical and boolean columns; missing is not one of them).
        has_missing: the training split has missing values in this column.
        missing_rate: their share in the training split.
        lo, hi: smallest and largest training value (numbers; seconds since 1970 for datetimes).
        decimals: decimals continuous values are rounded to (inferred, at most 6).
        unit: ``D`` when every datetime is a midnight (samples are dates), else ``s``.
    """

    name: str
    kind: Kind
    dtype: str
    categories: list[Any] = field(default_factory=list)
    has_missing: bool = False
    missing_rate: float = 0.0
    lo: float = 0.0
    hi: float = 0.0
    decimals: int = 6
    unit: str = "s"


def _seconds(s: pd.Series) -> np.ndarray:
    """Datetimes as float seconds since 1970 (NaN for missing)."""
    pd = pandas()
    return ((s - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)


def column_values(s: pd.Series, info: ColumnInfo) -> np.ndarray:
    """A column as numbers: floats for numeric kinds (NaN missing), category codes for the others (-1 missing;
    values outside the category set also -1)."""
    pd = pandas()
    if info.kind in NUMERIC_KINDS:
        if info.kind == "datetime":
            return _seconds(pd.to_datetime(s, errors="coerce"))
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    cats = info.categories
    if info.kind == "boolean":
        keys = s.map(lambda v: v if v is None or isinstance(v, bool) else
                     (str(v).strip().lower() == "true") if str(v).strip().lower() in ("true", "false") else v)
    else:
        keys = s
    codes = np.asarray(pd.Categorical(keys.astype(object), categories=pd.Index(cats, dtype=object)).codes,
                       dtype=np.int64)
    loose = (codes < 0) & keys.notna().to_numpy()
    if loose.any():  # values that match a category only as text (e.g. 3 vs "3", "True" vs True)
        lookup = {str(c): i for i, c in enumerate(cats)}
        codes[loose] = [lookup.get(str(_plain(v)), -1) for v in keys[loose]]
    return codes


# -- transforms ----------------------------------------------------------------------------------------

def _ndtri(u: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return np.asarray(ndtri(u))


def _ndtr(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return np.asarray(ndtr(z))


@dataclass
class NumberCodec:
    """The reversible transform of one number.

    ``quantile``: the empirical CDF through ``N_QUANTILES`` quantiles (ties split evenly, as scikit-learn's
    ``QuantileTransformer``), then the standard-normal quantile function. ``mode``: CTGAN's mode-specific
    normalisation on a variational Gaussian mixture (at most 10 modes, weights below 0.005 pruned); the mode of a
    value is drawn from its posterior over modes.

    Arguments:
        method: ``quantile`` or ``mode``.
        quantiles: the column's quantiles at ``linspace(0, 1, len(quantiles))`` (both methods keep them: tokens
            and bounds use them).
        means, stds: the modes (``mode``).
    """

    method: Literal["quantile", "mode"]
    quantiles: list[float]
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, x: np.ndarray, method: Literal["quantile", "mode"], seed: int = 0) -> NumberCodec:
        """Fit on observed (non-missing) values ``x``."""
        q = min(N_QUANTILES, len(x))
        quantiles = np.quantile(x, np.linspace(0, 1, q)).tolist()
        if method == "quantile":
            return cls("quantile", quantiles)
        from sklearn.mixture import BayesianGaussianMixture

        rng = np.random.default_rng(seed)
        sub = x if len(x) <= 5000 else rng.choice(x, 5000, replace=False)
        k = int(min(10, len(np.unique(sub))))
        if k < 2:
            return cls("mode", quantiles, [float(sub.mean())], [max(float(sub.std()), 1e-3 * (1 + abs(sub.mean())))])
        bgm = BayesianGaussianMixture(n_components=k, weight_concentration_prior_type="dirichlet_process",
                                      weight_concentration_prior=1e-3, max_iter=200, n_init=1, random_state=seed)
        import warnings

        loc, scale = float(sub.mean()), float(sub.std()) or 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bgm.fit(((sub - loc) / scale).reshape(-1, 1))  # fitted on the standardised column
        keep = bgm.weights_ > 0.005
        means = bgm.means_[keep, 0] * scale + loc
        stds = np.sqrt(bgm.covariances_[keep].reshape(-1)) * scale
        floor = 1e-4 * (float(np.ptp(sub)) + 1e-12)
        return cls("mode", quantiles, means.tolist(), np.maximum(stds, floor).tolist())

    @property
    def modes(self) -> int:
        return len(self.means) if self.method == "mode" else 0

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Empirical CDF ``u ∈ [0, 1]`` of values (ties get the middle of their range)."""
        qv = np.asarray(self.quantiles)
        refs = np.linspace(0, 1, len(qv))
        if len(qv) == 1:
            return np.full(x.shape, 0.5)
        return 0.5 * (np.interp(x, qv, refs) - np.interp(-x, -qv[::-1], -refs[::-1]))

    def icdf(self, u: np.ndarray) -> np.ndarray:
        """Inverse empirical CDF: values in the training range."""
        qv = np.asarray(self.quantiles)
        return np.interp(u, np.linspace(0, 1, len(qv)), qv)

    def encode(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """Observed values → (normalised number, mode index or None)."""
        if self.method == "quantile":
            return _ndtri(np.clip(self.cdf(x), _EPS, 1 - _EPS)), None
        mu, sd = np.asarray(self.means), np.asarray(self.stds)
        modes = np.empty(len(x), dtype=np.int64)
        for lo in range(0, len(x), 65536):  # posterior over modes, Gumbel-max draw
            xs = x[lo : lo + 65536, None]
            logp = -0.5 * ((xs - mu) / sd) ** 2 - np.log(sd)
            modes[lo : lo + 65536] = np.argmax(logp + rng.gumbel(size=logp.shape), axis=1)
        alpha = np.clip((x - mu[modes]) / (4 * sd[modes]), -0.99, 0.99)
        return alpha, modes

    def decode(self, v: np.ndarray, modes: np.ndarray | None) -> np.ndarray:
        """Normalised numbers (and modes) → values, clipped to the training range."""
        lo, hi = self.quantiles[0], self.quantiles[-1]
        if self.method == "quantile":
            return self.icdf(_ndtr(v))
        assert modes is not None
        mu, sd = np.asarray(self.means), np.asarray(self.stds)
        return np.clip(np.clip(v, -1, 1) * 4 * sd[modes] + mu[modes], lo, hi)


@dataclass(frozen=True)
class Block:
    """A contiguous part of the ``table`` form: ``num`` (width 1) or a one-hot ``cat`` block.

    Arguments:
        kind: ``num`` or ``cat``.
        offset, width: position in the row vector.
        column: the column it belongs to.
        role: ``value`` (a number), ``mode`` (its mixture mode), ``missing`` (its missingness indicator) or
            ``category`` (a categorical column's value).
        freq: training frequency of each level (``cat`` blocks).
    """

    kind: Literal["num", "cat"]
    offset: int
    width: int
    column: str
    role: Literal["value", "mode", "missing", "category"]
    freq: tuple[float, ...] = ()


@dataclass(frozen=True)
class BlockLayout:
    """The block structure of ``table`` rows (numpy): what the exported runtime hardens and labels.

    Arguments:
        blocks: every block in row order.
        label: index into ``blocks`` of the categorical block that equals the class label, or None.
    """

    blocks: tuple[Block, ...]
    label: int | None = None

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> Self:
        """The layout a tabular modality put in ``DataSpec.info`` (``blocks``, ``label_block``)."""
        blocks = tuple(Block(**{**b, "freq": tuple(b.get("freq", ()))}) for b in info["blocks"])
        label = info.get("label_block")
        return cls(blocks, None if label is None or label < 0 else int(label))

    @property
    def dims(self) -> int:
        return sum(b.width for b in self.blocks)

    @property
    def num_positions(self) -> list[int]:
        """Positions of the numeric dimensions."""
        return [b.offset for b in self.blocks if b.kind == "num"]

    @property
    def cats(self) -> list[Block]:
        """The one-hot blocks."""
        return [b for b in self.blocks if b.kind == "cat"]

    def harden_array(self, x: np.ndarray) -> np.ndarray:
        """Every one-hot block of rows ``x (B, D)`` replaced by the one-hot of its argmax (numbers unchanged)."""
        out = x.copy()
        for b in self.cats:
            k = x[:, b.offset : b.offset + b.width].argmax(1)
            out[:, b.offset : b.offset + b.width] = np.eye(b.width, dtype=x.dtype)[k]
        return out

    def label_array(self, x: np.ndarray, label: np.ndarray | None) -> np.ndarray:
        """Class labels written into the label block of rows ``x (B, D)``."""
        if self.label is None or label is None:
            return x
        b = self.blocks[self.label]
        x = x.copy()
        x[:, b.offset : b.offset + b.width] = np.eye(b.width, dtype=x.dtype)[np.asarray(label, dtype=np.int64)]
        return x


def _splitmix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def row_jitter(tokens: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers ``(N, C)`` that are a fixed function of each row's tokens and the column (so decoding
    the same row always gives the same values, wherever it sits)."""
    h = np.zeros(tokens.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(tokens.shape[1]):
            h = _splitmix(h * np.uint64(1_000_003) + tokens[:, j].astype(np.uint64) + np.uint64(j + 1))
        cols = [_splitmix(h + np.uint64(j * 0x9E3779B97F4A7C15 % (1 << 63))) for j in range(tokens.shape[1])]
    return np.stack(cols, axis=1).astype(np.float64) / 2.0**64 if cols else np.zeros(tokens.shape)


@dataclass
class Encoded:
    """A table in compact form: normalised numbers ``num (N, n_num)`` and level codes ``cat (N, n_cat)``."""

    num: np.ndarray
    cat: np.ndarray

    def __len__(self) -> int:
        return int(self.num.shape[0] if self.num.size or not self.cat.size else self.cat.shape[0])

    def take(self, idx: np.ndarray) -> Encoded:
        return Encoded(self.num[idx], self.cat[idx])


class TableCodec:
    """The fitted transforms of every column of a table: DataFrame ↔ compact codes ↔ ``table`` rows / tokens.

    Arguments:
        columns: each column's :class:`ColumnInfo`, in the table's order.
        numbers: a :class:`NumberCodec` per numeric column name.
        bins: equal-mass quantile bins of a number in the ``tokens`` form (numbers with at most this many distinct
            values get one token per value).
        target: the target column (first in the ``tokens`` form), or None.
        exact_values: per numeric column with few distinct values, those values (its tokens).
    """

    def __init__(self, columns: list[ColumnInfo], numbers: dict[str, NumberCodec], bins: int = 256,
                 target: str | None = None, exact_values: dict[str, list[float]] | None = None) -> None:
        self.columns, self.numbers, self.bins, self.target = columns, numbers, bins, target
        self.exact_values = exact_values or {}
        self.by_name = {c.name: c for c in columns}
        self.blocks, self.slots = self._layout()

    # -- fitting and persistence -------------------------------------------------------------------
    @classmethod
    def fit(cls, df: pd.DataFrame, columns: list[ColumnInfo], numeric: Literal["quantile", "mode"] = "quantile",
            bins: int = 256, target: str | None = None, seed: int = 0) -> Self:
        """Fit every column's transform on the training split ``df``."""
        numbers: dict[str, NumberCodec] = {}
        exact: dict[str, list[float]] = {}
        for j, c in enumerate(columns):
            if c.kind in NUMERIC_KINDS:
                v = column_values(df[c.name], c)
                v = v[~np.isnan(v)]
                numbers[c.name] = NumberCodec.fit(v, numeric, seed + j)
                uniq = np.unique(v)
                if len(uniq) <= bins:
                    exact[c.name] = uniq.tolist()
        return cls(columns, numbers, bins, target, exact)

    def to_json(self) -> str:
        return json.dumps({"columns": [asdict(c) for c in self.columns], "bins": self.bins, "target": self.target,
                           "numbers": {k: asdict(v) for k, v in self.numbers.items()},
                           "exact_values": self.exact_values})

    @classmethod
    def from_json(cls, text: str) -> Self:
        d = json.loads(text)
        return cls([ColumnInfo(**c) for c in d["columns"]], {k: NumberCodec(**v) for k, v in d["numbers"].items()},
                   int(d["bins"]), d.get("target"), d.get("exact_values", {}))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    # -- layout ----------------------------------------------------------------------------------------
    def _layout(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
        """Blocks of the ``table`` form and, per column, the slots of its parts in :class:`Encoded`."""
        blocks: list[dict[str, Any]] = []
        slots: dict[str, dict[str, int]] = {}
        off, n_num, n_cat = 0, 0, 0

        def add(kind: str, width: int, column: str, role: str) -> None:
            nonlocal off
            blocks.append({"kind": kind, "offset": off, "width": width, "column": column, "role": role})
            off += width

        for c in self.columns:
            s: dict[str, int] = {}
            if c.kind in NUMERIC_KINDS:
                s["num"] = n_num
                n_num += 1
                add("num", 1, c.name, "value")
                k = self.numbers[c.name].modes
                if k:
                    s["mode"] = n_cat
                    n_cat += 1
                    add("cat", k, c.name, "mode")
                if c.has_missing:
                    s["missing"] = n_cat
                    n_cat += 1
                    add("cat", 2, c.name, "missing")
            else:
                s["cat"] = n_cat
                n_cat += 1
                add("cat", len(c.categories) + int(c.has_missing), c.name, "category")
            slots[c.name] = s
        return blocks, slots

    @property
    def dims(self) -> int:
        return sum(b["width"] for b in self.blocks)

    @property
    def token_columns(self) -> list[str]:
        """Column order of the ``tokens`` form: the target first (so conditioning on it is a prompt)."""
        names = self.names
        return [self.target, *[n for n in names if n != self.target]] if self.target in names else names

    def token_width(self, c: ColumnInfo) -> int:
        """Distinct tokens of a column in the ``tokens`` form."""
        if c.kind in NUMERIC_KINDS:
            base = len(self.exact_values[c.name]) if c.name in self.exact_values else self.bins
        else:
            base = len(c.categories)
        return base + int(c.has_missing)

    def token_ranges(self) -> list[tuple[int, int]]:
        """``[lo, hi)`` token ids of each position of the ``tokens`` form (id 0 is the start token)."""
        out, lo = [], 1
        for name in self.token_columns:
            w = self.token_width(self.by_name[name])
            out.append((lo, lo + w))
            lo += w
        return out

    def info(self, form: str, label: str | None, freqs: Mapping[int, np.ndarray] | None = None) -> dict[str, Any]:
        """``DataSpec.info`` for ``form``: the blocks (``table``) or the token ranges (``tokens``)."""
        if form == "tokens":
            return {"token_ranges": [list(r) for r in self.token_ranges()], "columns": self.token_columns}
        blocks = []
        cat_i = 0
        label_block = -1
        for i, b in enumerate(self.blocks):
            entry = dict(b)
            if b["kind"] == "cat":
                if freqs is not None and cat_i in freqs:
                    entry["freq"] = [float(f) for f in freqs[cat_i]]
                if label is not None and b["column"] == label and b["role"] == "category":
                    label_block = i
                cat_i += 1
            blocks.append(entry)
        return {"blocks": blocks, "label_block": label_block}

    # -- DataFrame ↔ codes ------------------------------------------------------------------------------
    def encode(self, df: pd.DataFrame, seed: int = 0) -> Encoded:
        """A DataFrame (with the fitted columns) → compact codes. Missing numbers are imputed by a seeded draw from
        the observed values and flagged in their missingness block; unseen categories become missing (or, in a
        column without missing values, its most frequent level)."""
        n = len(df)
        n_num = sum(1 for b in self.blocks if b["kind"] == "num")
        n_cat = sum(1 for b in self.blocks if b["kind"] == "cat")
        num = np.zeros((n, n_num), dtype=np.float32)
        cat = np.zeros((n, n_cat), dtype=np.int32)
        for j, c in enumerate(self.columns):
            rng = np.random.default_rng([seed, j])
            s = self.slots[c.name]
            v = column_values(df[c.name], c)
            if c.kind in NUMERIC_KINDS:
                miss = np.isnan(v)
                if miss.any():
                    obs = v[~miss]
                    pool = obs if len(obs) else np.asarray(self.numbers[c.name].quantiles)
                    v = v.copy()
                    v[miss] = rng.choice(pool, int(miss.sum()))
                z, modes = self.numbers[c.name].encode(v, rng)
                num[:, s["num"]] = z
                if modes is not None:
                    cat[:, s["mode"]] = modes
                if "missing" in s:
                    cat[:, s["missing"]] = miss
            else:
                codes = v.copy()
                bad = codes < 0
                if bad.any():
                    if c.has_missing:
                        codes[bad] = len(c.categories)
                    else:
                        codes[bad] = int(np.bincount(codes[~bad], minlength=1).argmax()) if (~bad).any() else 0
                cat[:, s["cat"]] = codes
        return Encoded(num, cat)

    def frequencies(self, enc: Encoded) -> dict[int, np.ndarray]:
        """Training frequency of every level of every one-hot block."""
        widths = [b["width"] for b in self.blocks if b["kind"] == "cat"]
        return {i: np.bincount(enc.cat[:, i], minlength=w) / max(1, len(enc)) for i, w in enumerate(widths)}

    def token_ids(self, enc: Encoded) -> np.ndarray:
        """Compact codes → ``tokens`` rows ``int64 (N, C)``."""
        n = len(enc)
        out = np.zeros((n, len(self.columns)), dtype=np.int64)
        ranges = self.token_ranges()
        for pos, name in enumerate(self.token_columns):
            c, s = self.by_name[name], self.slots[name]
            lo = ranges[pos][0]
            if c.kind in NUMERIC_KINDS:
                codec = self.numbers[name]
                values = codec.decode(enc.num[:, s["num"]].astype(np.float64),
                                      enc.cat[:, s["mode"]] if "mode" in s else None)
                if name in self.exact_values:
                    ev = np.asarray(self.exact_values[name])
                    local = np.clip(np.searchsorted(ev, values - 1e-9 * (1 + np.abs(values))), 0, len(ev) - 1)
                else:
                    local = np.clip((codec.cdf(values) * self.bins).astype(np.int64), 0, self.bins - 1)
                if "missing" in s:
                    local = np.where(enc.cat[:, s["missing"]] == 1, self.token_width(c) - 1, local)
            else:
                local = enc.cat[:, s["cat"]]
            out[:, pos] = lo + local
        return out

    def encode_tokens(self, tok: np.ndarray) -> Encoded:
        """``tokens`` rows → compact codes (inverse of :meth:`token_ids`, numbers placed inside their bins)."""
        return self.encode(self.decode_tokens(tok))

    # -- samples → DataFrame --------------------------------------------------------------------------
    def decode(self, x: np.ndarray) -> pd.DataFrame:
        """``table`` rows ``(N, D)`` → a DataFrame in the original columns, dtypes and ranges (one-hot blocks by
        argmax)."""
        x = np.asarray(x, dtype=np.float32)
        nums = [b["offset"] for b in self.blocks if b["kind"] == "num"]
        cats = [b for b in self.blocks if b["kind"] == "cat"]
        num = x[:, nums].astype(np.float64) if nums else np.zeros((len(x), 0))
        num = np.nan_to_num(num, nan=0.0, posinf=10.0, neginf=-10.0)
        codes = (np.stack([x[:, b["offset"] : b["offset"] + b["width"]].argmax(1) for b in cats], 1)
                 if cats else np.zeros((len(x), 0), dtype=np.int64))
        values: dict[str, np.ndarray] = {}
        for c in self.columns:
            s = self.slots[c.name]
            if c.kind in NUMERIC_KINDS:
                v = self.numbers[c.name].decode(num[:, s["num"]], codes[:, s["mode"]] if "mode" in s else None)
                if "missing" in s:
                    v = np.where(codes[:, s["missing"]] == 1, np.nan, v)
                values[c.name] = v
            else:
                values[c.name] = codes[:, s["cat"]]
        return self.frame(values)

    def decode_tokens(self, tok: np.ndarray) -> pd.DataFrame:
        """``tokens`` rows → a DataFrame; a number's bin is decoded to a value inside it at a position that is a
        fixed function of the row's tokens (:func:`row_jitter`), so decoding is deterministic."""
        t = np.asarray(tok).astype(np.int64)
        ranges = self.token_ranges()
        jitter = row_jitter(t)
        values: dict[str, np.ndarray] = {}
        for pos, name in enumerate(self.token_columns):
            c = self.by_name[name]
            lo, hi = ranges[pos]
            local = np.clip(t[:, pos] - lo, 0, hi - lo - 1)
            miss = (local == hi - lo - 1) if c.has_missing else np.zeros(len(t), dtype=bool)
            if c.kind in NUMERIC_KINDS:
                if name in self.exact_values:
                    ev = np.asarray(self.exact_values[name])
                    v = ev[np.clip(local, 0, len(ev) - 1)]
                else:
                    u = (np.clip(local, 0, self.bins - 1) + jitter[:, pos]) / self.bins
                    v = self.numbers[name].icdf(u)
                values[name] = np.where(miss, np.nan, v)
            else:
                values[name] = local
        return self.frame(values)

    def frame(self, values: Mapping[str, np.ndarray]) -> pd.DataFrame:
        """Numbers (NaN = missing) and category codes (the extra last code = missing) per column → a DataFrame
        with the original dtypes: integers rounded, continuous values rounded to their decimals, datetimes back
        to timestamps, categories to their values."""
        pd = pandas()
        cols: dict[str, Any] = {}
        for c in self.columns:
            v = values[c.name]
            if c.kind in NUMERIC_KINDS:
                v = np.clip(v, c.lo, c.hi)
                if c.kind == "integer":
                    r = np.round(v)
                    if c.dtype.startswith("float"):  # whole numbers stored as floats stay floats
                        cols[c.name] = pd.Series(r.astype(c.dtype))
                    elif np.isnan(r).any() or c.dtype in ("Int64", "Int32", "Int16", "Int8"):
                        s = pd.array(np.where(np.isnan(r), 0, r).astype(np.int64), dtype="Int64")
                        s[np.isnan(r)] = pd.NA
                        cols[c.name] = pd.Series(s)
                    else:
                        cols[c.name] = pd.Series(r.astype(c.dtype if c.dtype.startswith(("int", "uint")) else
                                                          np.int64))
                elif c.kind == "continuous":
                    r = np.round(v, c.decimals)
                    cols[c.name] = pd.Series(r.astype(np.float32 if c.dtype == "float32" else np.float64))
                else:
                    step = 86400.0 if c.unit == "D" else 1.0
                    secs = np.round(v / step) * step
                    ts = pd.to_datetime(pd.Series(secs), unit="s", errors="coerce")
                    cols[c.name] = ts
            else:
                cats = list(c.categories)
                codes = np.asarray(v, dtype=np.int64)
                miss = codes >= len(cats)
                if c.kind == "boolean":
                    arr = np.asarray([bool(x) if isinstance(x, bool) else str(x).lower() == "true" for x in cats])
                    out = arr[np.clip(codes, 0, len(cats) - 1)] if cats else np.zeros(len(codes), dtype=bool)
                    if miss.any():
                        b = pd.array(out, dtype="boolean")
                        b[miss] = pd.NA
                        cols[c.name] = pd.Series(b)
                    else:
                        cols[c.name] = pd.Series(out)
                    continue
                objs = np.empty(len(codes), dtype=object)
                lut = np.asarray(cats, dtype=object)
                objs[~miss] = lut[codes[~miss]]
                objs[miss] = None
                if c.dtype == "category":
                    cols[c.name] = pd.Series(pd.Categorical(objs, categories=cats))
                elif all(isinstance(x, int | float) and not isinstance(x, bool) for x in cats):
                    numeric = np.asarray([np.nan if o is None else o for o in objs], dtype=np.float64)
                    if all(isinstance(x, int) for x in cats):
                        if miss.any():
                            s = pd.array(np.where(miss, 0, numeric).astype(np.int64), dtype="Int64")
                            s[miss] = pd.NA
                            cols[c.name] = pd.Series(s)
                        else:
                            cols[c.name] = pd.Series(numeric.astype(np.int64))
                    else:
                        cols[c.name] = pd.Series(numeric)
                else:
                    series = pd.Series(objs, dtype=object)
                    with contextlib.suppress(TypeError, ValueError):
                        series = series.astype(c.dtype)
                    cols[c.name] = series
        return pd.DataFrame(cols)


# -- sample files ------------------------------------------------------------------------------------

#: the file formats table samples are written in
SAMPLE_FORMATS = ("csv", "tsv", "parquet")


def table_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """A DataFrame as CSV, TSV or Parquet bytes (deterministic for the same frame): the sample files of table runs
    and of their exported models."""
    if fmt == "parquet":
        require("pyarrow", "tabular", "Parquet output")
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    return df.to_csv(index=False, sep="\t" if fmt == "tsv" else ",", lineterminator="\n").encode("utf-8")
