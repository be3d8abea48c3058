"""Tables: reading CSV/TSV/Parquet, column types, reversible per-column transforms, missingness, and the compact
encoded table that streams dense training batches.

A table becomes one of two *forms*:

* ``table`` — a float matrix ``(N, D)`` of *blocks*: a numeric block (width 1) per number, holding its quantile
  (Gaussianising) transform or CTGAN's mode-specific normalisation ``α = (x - μ_k) / 4σ_k`` (then followed by a
  one-hot block of the mode ``k``); a one-hot block per categorical or boolean column; and a two-level one-hot
  *missingness* block after every number that has missing values (the number itself is imputed by a draw from the
  column's observed values, so the indicator alone says it is missing). Families read the blocks from
  ``DataSpec.info["blocks"]`` (:class:`TableLayout`).
* ``tokens`` — one token per value ``int64 (N, C)``, column ``j`` owning ids ``[lo_j, hi_j)`` (id 0 is the start
  token): a category, an exact value of a number with few distinct values, or one of ``bins`` equal-mass quantile
  bins of a number (decoded to a value inside the bin); missing values have a token of their own.

The training split is held *encoded* (codes and normalised numbers, a few bytes per value); dense one-hot rows are
built per batch (:class:`TableDataset`), so a million-row table never exists as a dense one-hot matrix.
Decoding gives back a DataFrame with the original column order, dtypes, category sets, integer rounding, decimals
and value ranges (inverse transforms never leave the training range).

The torch-free part — column metadata, number transforms, the block layout and decoding to a DataFrame — is
:mod:`genlab.data.table_codec` (what the exported runtime uses), re-exported here; this module adds the torch side.

References:
    Xu et al., "Modeling Tabular Data using Conditional GAN" (CTGAN, TVAE), 2019, arXiv:1907.00503
    (mode-specific normalisation).
    Kotelnikov et al., "TabDDPM: Modelling Tabular Data with Diffusion Models", 2023, arXiv:2209.15421
    (quantile transform of numbers).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from genlab.core import DataSpec
from genlab.data import ArrayDataset, seeded_generator
from genlab.data.table_codec import (
    N_QUANTILES,
    NUMERIC_KINDS,
    Block,
    BlockLayout,
    ColumnInfo,
    Encoded,
    Kind,
    NumberCodec,
    _plain,
    _seconds,
    column_values,
    pandas,
    row_jitter,
)
from genlab.data.table_codec import TableCodec as NumpyTableCodec
from genlab.errors import DataError
from genlab.extras import require

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "NUMERIC_KINDS",
    "N_QUANTILES",
    "TABLE_SUFFIXES",
    "Block",
    "ColumnInfo",
    "Encoded",
    "Kind",
    "NumberCodec",
    "TableCodec",
    "TableDataset",
    "TableLayout",
    "column_values",
    "infer_columns",
    "pandas",
    "read_table",
    "row_jitter",
    "split_rows",
]

# -- reading ---------------------------------------------------------------------------------------

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (``,``), TSV (tab) or Parquet file into a DataFrame.

    Raises:
        DataError: for an empty, ragged, non-UTF-8 or unreadable file, in one line saying what to do.
    """
    pd = pandas()
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        require("pyarrow", "tabular", "Parquet files")
        try:
            df = pd.read_parquet(path)
        except Exception as e:
            raise DataError(f"cannot read {path} as Parquet ({str(e).splitlines()[0]})") from None
    else:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 text (byte {e.start} is 0x{raw[e.start]:02x}); re-save it as "
                            "UTF-8") from None
        if not text.strip():
            raise DataError(f"{path} is empty; give a file with a header row and data rows")
        sep = "\t" if suffix == ".tsv" else ","
        widths = [len(r) for r in csv.reader(io.StringIO(text), delimiter=sep) if r]
        if widths and any(w != widths[0] for w in widths):
            line = next(i for i, w in enumerate(widths) if w != widths[0]) + 1
            raise DataError(f"{path} is ragged: row {line} has {widths[line - 1]} fields but the header has "
                            f"{widths[0]}; every row needs the same number of fields")
        try:
            df = pd.read_csv(io.StringIO(text), sep=sep)
        except Exception as e:
            raise DataError(f"cannot parse {path} ({str(e).splitlines()[0]})") from None
    if df.shape[1] == 0 or len(df) == 0:
        raise DataError(f"{path} has no data rows; give a file with a header row and data rows")
    if df.columns.duplicated().any():
        raise DataError(f"{path} has duplicate column names ({df.columns[df.columns.duplicated()][0]!r})")
    df.columns = [str(c) for c in df.columns]
    return df


# -- column types ------------------------------------------------------------------------------------

def _decimals(x: np.ndarray) -> int:
    """Fewest decimals (≤ 6) that reproduce the values."""
    x = x[:20000]
    for d in range(7):
        if np.allclose(x, np.round(x, d), rtol=0, atol=1e-9 * max(1.0, float(np.abs(x).max(initial=0)))):
            return d
    return 6


def _looks_boolean(values: Sequence[Any]) -> bool:
    return {str(v).strip().lower() for v in values} <= {"true", "false"} and len(values) > 0


def infer_columns(df: pd.DataFrame, *, categorical: Sequence[str] = (), max_levels: int = 1000,
                  source: str = "the data") -> list[ColumnInfo]:
    """Infer each column's kind (continuous, integer, categorical, boolean, datetime) and its metadata.

    Arguments:
        df: the table (already without dropped columns).
        categorical: columns to treat as categorical whatever their dtype.
        max_levels: most categories a categorical column may have.
        source: name of the data for messages.

    Raises:
        DataError: for an all-missing column or a categorical column with more levels than the rows allow.
    """
    pd = pandas()
    n = len(df)
    out: list[ColumnInfo] = []
    for name in df.columns:
        s = df[name]
        missing = s.isna()
        if bool(missing.all()):
            raise DataError(f"column {name!r} of {source} is empty (all {n} values missing); drop it with "
                            f"--drop {name}")
        obs = s[~missing]
        dtype = str(s.dtype)
        kind: Kind
        if name in categorical:
            kind = "categorical"
        elif pd.api.types.is_bool_dtype(s.dtype):
            kind = "boolean"
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            kind = "datetime"
        elif pd.api.types.is_numeric_dtype(s.dtype):
            v = obs.to_numpy(dtype=np.float64)
            kind = "integer" if np.all(np.isfinite(v)) and np.all(v == np.round(v)) else "continuous"
            if not np.all(np.isfinite(v)):
                raise DataError(f"column {name!r} of {source} has infinite values; replace them or drop the column")
        elif isinstance(s.dtype, pd.CategoricalDtype):
            kind = "categorical"
        else:
            uniq = pd.unique(obs)
            if _looks_boolean(list(uniq[:3])) and _looks_boolean(list(uniq)):
                kind = "boolean"
            else:
                kind = "categorical"
                head = obs.astype(str).head(50)
                if head.str.match(r"^\d{4}-\d{2}-\d{2}").all():
                    try:
                        pd.to_datetime(obs.astype(str), errors="raise")
                        kind = "datetime"
                    except (ValueError, TypeError):
                        pass
        info = ColumnInfo(name=name, kind=kind, dtype=dtype, has_missing=bool(missing.any()),
                          missing_rate=float(missing.mean()))
        if kind in ("categorical", "boolean"):
            if isinstance(s.dtype, pd.CategoricalDtype):
                cats = [_plain(c) for c in s.cat.categories if (obs == c).any()]
            else:
                cats = sorted({_plain(v) for v in pd.unique(obs)}, key=lambda v: (str(type(v)), v))
            limit = min(max_levels, max(2, n // 2))
            if len(cats) > limit:
                raise DataError(f"column {name!r} of {source} has {len(cats):,} distinct values in {n:,} rows, too "
                                f"many to model as categories (at most {limit:,}); drop it with --drop {name}"
                                + (" or raise --max-levels" if limit == max_levels else ""))
            info.categories = cats
        else:
            v = _seconds(pd.to_datetime(obs)) if kind == "datetime" else obs.to_numpy(dtype=np.float64)
            info.lo, info.hi = float(v.min()), float(v.max())
            if kind == "continuous":
                info.decimals = _decimals(v)
            if kind == "datetime":
                info.unit = "D" if np.all(np.mod(v, 86400) == 0) else "s"
        out.append(info)
    return out


# -- layout and codec (torch side) -------------------------------------------------------------------

@dataclass(frozen=True)
class TableLayout(BlockLayout):
    """The block structure of a ``table``-form spec, as families use it (torch tensors; the numpy methods of
    :class:`~genlab.data.table_codec.BlockLayout` do the same on arrays).

    Arguments:
        blocks: every block in row order.
        label: index into ``blocks`` of the categorical block that equals the class label, or None.
    """

    @classmethod
    def of(cls, spec: DataSpec) -> TableLayout:
        """The layout a tabular modality put in ``spec.info``."""
        return cls.from_info(spec.info)

    @property
    def num_index(self) -> Tensor:
        """Positions of the numeric dimensions ``(n_num,)``."""
        return torch.tensor(self.num_positions, dtype=torch.long)

    def harden(self, x: Tensor) -> Tensor:
        """Replace every one-hot block by the one-hot of its argmax (numbers unchanged)."""
        out = x.clone()
        for b in self.cats:
            part = x[:, b.offset : b.offset + b.width]
            out[:, b.offset : b.offset + b.width] = torch.nn.functional.one_hot(part.argmax(1), b.width).to(x)
        return out

    def codes(self, x: Tensor) -> Tensor:
        """Level index of every one-hot block ``(B, n_cat)``."""
        if not self.cats:
            return torch.zeros(x.shape[0], 0, dtype=torch.long, device=x.device)
        return torch.stack([x[:, b.offset : b.offset + b.width].argmax(1) for b in self.cats], dim=1)

    def set_label(self, x: Tensor, label: Tensor | None) -> Tensor:
        """Write class labels into the label block (a conditional model's samples then agree with their label)."""
        if self.label is None or label is None:
            return x
        b = self.blocks[self.label]
        x = x.clone()
        x[:, b.offset : b.offset + b.width] = torch.nn.functional.one_hot(label.long(), b.width).to(x)
        return x




class TableCodec(NumpyTableCodec):
    """The fitted transforms of every column of a table (:class:`genlab.data.table_codec.TableCodec`), with the
    torch side: dense ``table`` batches and ``tokens`` tensors; decoding also takes tensors."""

    def dense(self, enc: Encoded) -> Tensor:
        """Compact codes → ``table`` rows ``float32 (N, D)`` (one-hot blocks built here, per batch)."""
        n = len(enc)
        x = torch.zeros(n, self.dims)
        nums = [b["offset"] for b in self.blocks if b["kind"] == "num"]
        if nums:
            x[:, nums] = torch.from_numpy(enc.num)
        offs = torch.tensor([b["offset"] for b in self.blocks if b["kind"] == "cat"], dtype=torch.long)
        if len(offs):
            x.scatter_(1, torch.from_numpy(enc.cat.astype(np.int64)) + offs, 1.0)
        return x

    def tokens(self, enc: Encoded) -> Tensor:
        """Compact codes → ``tokens`` rows ``int64 (N, C)``."""
        return torch.from_numpy(self.token_ids(enc))

    def encode_tokens(self, tok: Tensor | np.ndarray) -> Encoded:
        """``tokens`` rows → compact codes (inverse of :meth:`tokens`, numbers placed inside their bins)."""
        return super().encode_tokens(_numpy(tok))

    def decode(self, x: Tensor | np.ndarray) -> pd.DataFrame:
        """``table`` rows ``(N, D)`` → a DataFrame (:meth:`genlab.data.table_codec.TableCodec.decode`)."""
        return super().decode(_numpy(x))

    def decode_tokens(self, tok: Tensor | np.ndarray) -> pd.DataFrame:
        """``tokens`` rows → a DataFrame (:meth:`genlab.data.table_codec.TableCodec.decode_tokens`)."""
        return super().decode_tokens(_numpy(tok))


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    """A tensor (any device, any float or integer dtype) as a numpy array; arrays as they are."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


# -- the dataset the trainer reads -------------------------------------------------------------------

class TableDataset:
    """One split of a table, held encoded; rows of its form are built per batch.

    Arguments:
        codec: the fitted transforms.
        enc: the split's compact codes.
        y: class labels (the target's codes) or None.
        spec: the data spec (form ``table`` or ``tokens``).
        frame: the split as a typed DataFrame (for metrics; None to not keep it).
    """

    def __init__(self, codec: TableCodec, enc: Encoded, y: Tensor | None, spec: DataSpec,
                 frame: pd.DataFrame | None = None) -> None:
        self.codec, self.enc, self._y, self.spec, self.frame = codec, enc, y, spec, frame
        self._tok: Tensor | None = codec.tokens(enc).to(torch.int32) if spec.form == "tokens" else None
        self._x: Tensor | None = None

    def __len__(self) -> int:
        return len(self.enc)

    def rows(self, idx: np.ndarray | Tensor) -> Tensor:
        """Rows ``idx`` in the split's form (``float32`` table rows or ``int64`` tokens)."""
        idx = np.asarray(idx, dtype=np.int64)
        if self._tok is not None:
            return self._tok[torch.from_numpy(idx)].long()
        return self.codec.dense(self.enc.take(idx))

    @property
    def x(self) -> Tensor:
        """Every row in the split's form (built once on first use; training uses :meth:`batch`)."""
        if self._x is None:
            self._x = self.rows(np.arange(len(self)))
        return self._x

    @property
    def y(self) -> Tensor | None:
        return self._y

    def steps_per_epoch(self, batch_size: int) -> int:
        if len(self) < batch_size:
            raise DataError(f"the training split has {len(self)} rows, fewer than the batch size {batch_size}; "
                            "lower --batch-size")
        return len(self) // batch_size

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor | None]:
        """The global batch of ``step``: a fresh permutation each epoch, last partial batch dropped."""
        epoch, k = divmod(step, self.steps_per_epoch(batch_size))
        perm = torch.randperm(len(self), generator=seeded_generator("order", seed, epoch))
        idx = perm[k * batch_size : (k + 1) * batch_size]
        return self.rows(idx.numpy()), None if self._y is None else self._y[idx]

    def head(self, n: int) -> ArrayDataset:
        idx = np.arange(min(n, len(self)))
        return ArrayDataset(self.rows(idx), None if self._y is None else self._y[: len(idx)], self.spec)


def split_rows(n: int, test_fraction: float, seed: int, strata: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test row indices; stratified on ``strata`` (class codes) when given, each class split in the
    same proportion (a class of one row stays in train)."""
    rng = np.random.default_rng(seed)
    if strata is None:
        perm = rng.permutation(n)
        k = max(1, round(n * test_fraction))
        return np.sort(perm[k:]), np.sort(perm[:k])
    test = []
    for c in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == c))
        k = round(len(idx) * test_fraction) if len(idx) > 1 else 0
        test.append(idx[:k])
    t = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    return np.setdiff1d(np.arange(n), t), t
