"""Molecules: SMILES files or the MOSES set as SMILES/SELFIES token sequences, one molecule per example, with
property-conditioned sampling and the MOSES metric set.

Data: ``.smi`` (one SMILES per line, the first field) or ``.csv``/``.tsv`` (``--column``), or the built-in ``moses``
(1,584,663 train / 176,074 test) and ``moses-100k`` (100,000 train molecules drawn with seed 0, the same test set)
read from the ``molsets`` wheel's data files. Every molecule is canonicalised by RDKit; invalid input molecules are
counted, reported and skipped (an error when most are invalid), duplicates dropped. A user file is split at random
(seed 0) by ``--test-fraction``. The canonical splits are cached under ``$GENLAB_CACHE/molecules``.

Tokens (``--tokenizer``): ``smiles`` (the SMILES regex: bracket atoms, two-letter elements, bonds, ring-bond labels),
``selfies`` (SMILES converted by ``selfies``; every token string decodes to a molecule), ``char``, or a
``tokenizer.json`` / run folder whose tokenizer to reuse (``--init-from`` fine-tuning). Each example is one molecule
from the start token to ``<|endoftext|>`` (:class:`~genlab.data.tokens.DocumentDataset`), so every token family
(``gpt``, ``rnn``, ``vae``) trains on it unchanged.

Property conditioning (``--properties qed,logp``): each training molecule is prefixed by tokens of the bins of its
properties (``<qed:27>``, 32 quantile bins of the training values by default), each dropped with probability
``--property-dropout`` so the model learns every subset (test molecules carry none);
``genlab sample RUN --condition "qed=0.9,logp=2.5"`` then prompts with the bins of the asked values (families whose
sampling takes a prompt: ``gpt``, ``rnn``), and the same model sampled without a condition generates its own prefix
(it stays an unconditional model).

Samples are written as ``.smi`` (one SMILES per line, with a ``.png`` grid drawn by RDKit and a ``.csv`` of
properties beside it), or as ``.png`` / ``.csv`` alone. ``genlab eval`` scores ``--samples`` molecules with the MOSES
metric set (:mod:`genlab.metrics.molecules`) against the test set, beside a same-size sample of training molecules
scored the same way (the same-n ceiling).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from genlab.checkpoint import write_bytes
from genlab.config import build, check
from genlab.core import DATASETS, DataSpec, register_dataset
from genlab.data.molecules import (
    PROPERTIES,
    SMILES_SUFFIXES,
    Conditions,
    cache_folder,
    cached_canonical,
    cached_properties,
    decode_molecules,
    molecule_files,
    moses_split,
    properties,
    read_smiles,
    to_selfies,
)
from genlab.data.tokens import TOKENIZER_FILE, Tokenizer, token_streams, train_char, train_symbols
from genlab.errors import CapabilityError, ConfigError, DataError
from genlab.modalities.base import (
    Column,
    Evaluation,
    Modality,
    Progress,
    Splits,
    fmt,
    likelihood_rows,
    no_progress,
    read_artifact,
    register_modality,
)

if TYPE_CHECKING:
    from genlab.data import Dataset
    from genlab.run import Run

KIND = "molecule"
MOSES_100K = 100_000


@register_dataset("moses", kind=KIND)
def moses() -> dict[str, Sequence[str]]:
    """MOSES (ZINC clean leads): 1,584,663 train / 176,074 test molecules, from the molsets wheel's data files."""
    return {"train": moses_split("train"), "test": moses_split("test")}


@register_dataset("moses-100k", kind=KIND)
def moses_100k() -> dict[str, Sequence[str]]:
    """100,000 MOSES training molecules (seed 0) and the MOSES test set, for CPU runs."""
    train = moses_split("train")
    pick = np.sort(np.random.default_rng(0).choice(len(train), MOSES_100K, replace=False))
    return {"train": [train[i] for i in pick], "test": moses_split("test")}


NOTATIONS = ("smiles", "selfies", "char")


@dataclass(frozen=True)
class MoleculeDataConfig:
    """How to read and tokenize molecules.

    Arguments:
        data: ``moses``, ``moses-100k``, or a ``.smi`` / ``.csv`` / ``.tsv`` file of SMILES.
        column: the CSV column holding SMILES (default: the one named like ``smiles``).
        tokenizer: ``smiles`` (regex), ``selfies``, ``char``, or a ``tokenizer.json`` / run folder to reuse.
        block_size: tokens per example (default: the longest molecule plus its end token).
        test_fraction: share of a user file's molecules held out for testing.
        max_molecules: use at most this many training molecules (None = all).
        properties: properties to condition on (``logp``, ``qed``, ``sa``, ``tpsa``, ``mw``), e.g. ``qed,logp``.
        property_bins: quantile bins per property (one token each).
        property_dropout: probability that a training molecule's prefix leaves out a property.
    """

    data: str = "moses-100k"
    column: str = ""
    tokenizer: str = "smiles"
    block_size: int | None = None
    test_fraction: float = 0.1
    max_molecules: int | None = None
    properties: tuple[str, ...] = ()
    property_bins: int = 32
    property_dropout: float = 0.5

    def __post_init__(self) -> None:
        check(self.tokenizer != "bpe", "--tokenizer for molecules is smiles, selfies, char, or a run folder or "
                                       "tokenizer.json to reuse")
        check(self.block_size is None or 2 <= self.block_size <= 4096, "--block-size must be in 2..4096")
        check(0 < self.test_fraction < 1, f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        check(self.max_molecules is None or self.max_molecules >= 1, "--max-molecules must be at least 1")
        bad = [p for p in self.properties if p not in PROPERTIES]
        check(not bad, f"unknown property {bad[0] if bad else ''!r} in --properties; choose from "
                       f"{', '.join(PROPERTIES)}")
        check(len(set(self.properties)) == len(self.properties), "--properties names a property twice")
        check(2 <= self.property_bins <= 1000, "--property-bins must be in 2..1000")
        check(0 <= self.property_dropout < 1, "--property-dropout must be in [0, 1)")


@dataclass(frozen=True)
class MoleculeEvalOptions:
    """Options of ``genlab eval`` on molecule runs.

    Arguments:
        samples: molecules to sample and score with the MOSES metric set (0 = likelihood only).
        ceiling: also score a same-size sample of training molecules the same way.
        kl: also compute GuacaMol's KL-divergence score against a training sample.
        nll_examples: test molecules the likelihood is computed on (``--max-examples`` overrides it).
        condition: also sample under this condition (e.g. ``qed=0.9``) and report the mean absolute deviation of
            the obtained properties from the asked ones, beside the same model's unconditional samples.
        batch: molecules sampled per call.
        temperature: sampling temperature of every scored draw (families with a ``temperature`` option: gpt,
            rnn); below 1 trades diversity for validity.
        guidance: classifier-free guidance scale of the ``condition`` prompt (1 = the prompt alone; gpt, rnn).
    """

    samples: int = 1000
    ceiling: bool = True
    kl: bool = True
    nll_examples: int = 10000
    condition: str = ""
    batch: int = 500
    temperature: float = 1.0
    guidance: float = 1.0

    def __post_init__(self) -> None:
        check(self.samples >= 0, "--samples must be >= 0")
        check(math.isfinite(self.temperature) and self.temperature > 0, "--temperature must be positive")
        check(math.isfinite(self.guidance) and self.guidance >= 0, "--guidance must be >= 0")
        check(self.guidance == 1.0 or bool(self.condition), "--guidance needs a --condition to guide toward")
        check(self.nll_examples >= 1, "--nll-examples must be at least 1")
        check(self.batch >= 1, "--batch must be at least 1")


# -- molecule sets ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MoleculeSets:
    """The canonical train and test molecules of a data config, where they are cached, and how they were read."""

    train: tuple[str, ...]
    test: tuple[str, ...]
    key: str
    folder: Path
    counts: dict[str, Any]
    builtin: str


def _source_key(cfg: MoleculeDataConfig) -> tuple[str, str, bool]:
    """(cache key, description, is built-in) of the molecules ``cfg.data`` names.

    Raises:
        DataError: for a missing path or a file that is not a SMILES file.
    """
    if cfg.data in DATASETS:
        if DATASETS[cfg.data].kind != KIND:
            raise DataError(f"'{cfg.data}' is {DATASETS[cfg.data].kind} data, not molecules")
        return f"builtin:{cfg.data}:v1", cfg.data, True
    p = Path(cfg.data).expanduser()
    if not p.is_file():
        raise DataError(f"{cfg.data} does not exist; give moses, moses-100k or a .smi/.csv file of SMILES")
    if not p.name.lower().removesuffix(".gz").endswith(SMILES_SUFFIXES):
        raise DataError(f"{p} is not a SMILES file; give a .smi, .smiles, .csv or .tsv file")
    st = p.stat()
    return f"file:{p.resolve()}:{st.st_size}:{st.st_mtime_ns}:{cfg.column}", str(p), False


@lru_cache(maxsize=8)
def _sets(key: str, what: str, builtin: bool, data: str, column: str, test_fraction: float) -> MoleculeSets:
    if builtin:
        splits, meta, folder = cached_canonical(key, lambda: {k: list(v) for k, v in DATASETS[data]().items()},
                                                what, strict=False)
        train, test = splits["train"], splits["test"]
    else:
        splits, meta, folder = cached_canonical(key, lambda: {"all": read_smiles(Path(data), column)}, what,
                                                strict=True)
        mols = splits["all"]
        if len(mols) < 2:
            raise DataError(f"{what} has {len(mols)} valid molecule; training and testing need at least 2")
        order = np.random.default_rng(0).permutation(len(mols))
        n_test = min(max(1, round(test_fraction * len(mols))), len(mols) - 1)
        test = [mols[i] for i in order[:n_test]]
        train = [mols[i] for i in order[n_test:]]
    return MoleculeSets(tuple(train), tuple(test), f"{key}:{test_fraction}", folder, meta["counts"],
                        data if builtin else "")


def molecule_sets(cfg: MoleculeDataConfig) -> MoleculeSets:
    """The canonical train/test molecules ``cfg`` names (read, canonicalised and split once; cached).

    Raises:
        DataError: for missing, empty or mostly invalid files; ExtraMissing without RDKit or molsets.
    """
    key, what, builtin = _source_key(cfg)
    s = _sets(key, what, builtin, cfg.data, cfg.column, cfg.test_fraction)
    if cfg.max_molecules is not None and cfg.max_molecules < len(s.train):
        s = MoleculeSets(s.train[: cfg.max_molecules], s.test, f"{s.key}:max{cfg.max_molecules}", s.folder,
                         s.counts, s.builtin)
    return s


# -- conditions ------------------------------------------------------------------------------------

def run_conditions(spec: DataSpec) -> Conditions | None:
    """The property bins of a run's data (None when it was trained without ``--properties``)."""
    d = spec.info.get("conditions")
    return Conditions.from_json(d) if d else None


def _source_run_spec(path: Path) -> dict[str, Any]:
    """The data spec of the run a reused tokenizer comes from (fine-tuning keeps its bins and block size), or {}
    for a bare ``tokenizer.json``."""
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.is_file()):
        return {}
    return dict(json.loads(cfg.read_text()).get("spec", {}))


# -- loading ---------------------------------------------------------------------------------------

def load_molecules(cfg: MoleculeDataConfig) -> Splits:
    """Read, canonicalise, split, tokenize and cache the molecules ``cfg`` names, one molecule per example.

    Raises:
        DataError: for unreadable, empty or mostly invalid data, or molecules that do not fit a fixed block size
            or tokenizer at all; ConfigError for properties that contradict a reused tokenizer's run.
    """
    sets = molecule_sets(cfg)
    fixed = Tokenizer.load(cfg.tokenizer) if cfg.tokenizer not in NOTATIONS else None
    kind = fixed.kind if fixed is not None else cfg.tokenizer
    notation = "selfies" if kind == "selfies" else "smiles"
    conds: Conditions | None = None
    source_spec = _source_run_spec(Path(cfg.tokenizer)) if fixed is not None else {}
    src_conds = source_spec.get("info", {}).get("conditions")
    if src_conds:
        src = Conditions.from_json(src_conds)
        if cfg.properties and tuple(cfg.properties) != src.names:
            raise ConfigError(f"--properties {','.join(cfg.properties)} contradicts the tokenizer's run "
                              f"({','.join(src.names)}); drop --properties")
        conds = src
    elif cfg.properties:
        values = cached_properties(sets.folder, f"train{len(sets.train)}", sets.train, cfg.properties)
        conds = Conditions.fit(values, cfg.property_bins)

    def texts(split: Sequence[str], prefixed: bool) -> tuple[list[str], int]:
        """The token texts of molecules (prefix + notation) and how many could not be written."""
        out: list[str] = []
        failed = 0
        notes = [to_selfies(s) for s in split] if notation == "selfies" else list(split)
        prefixes = [""] * len(split)
        if conds is not None and prefixed:
            vals = cached_properties(sets.folder, f"train{len(split)}", split, conds.names)
            keep = np.random.default_rng(0).random((len(split), len(conds.names))) >= cfg.property_dropout
            prefixes = ["".join(conds.token(n, vals[n][i]) for j, n in enumerate(conds.names)
                                if keep[i, j] and np.isfinite(vals[n][i])) for i in range(len(split))]
        for p, t in zip(prefixes, notes, strict=True):
            if t is None:
                failed += 1
            else:
                out.append(p + t)
        return out, failed

    # test molecules carry no prefix: their likelihood is the unconditional one (a prefix-free start is one of the
    # subsets the property dropout trains), and the test set needs no property computed
    train_texts, bad_train = texts(sets.train, True)
    test_texts, bad_test = texts(sets.test, False)
    if fixed is not None:
        tok = fixed
    elif kind == "char":
        tok = train_char(train_texts + test_texts)
    else:
        tok = train_symbols(train_texts + test_texts, kind, extra=conds.all_tokens() if conds else ())

    def length(t: str) -> int:
        return len(t) if tok.kind == "char" else len(tok.split(t))

    block = (cfg.block_size or (source_spec["shape"][0] if source_spec.get("shape") else 0)
             or max(length(t) for t in train_texts + test_texts) + 1)
    skipped = {"unencodable": bad_train + bad_test, "too_long": 0, "unknown_symbols": 0}

    def fitting(ts: list[str]) -> list[str]:
        out = []
        for t in ts:
            if not tok.fits(t):
                skipped["unknown_symbols"] += 1
            elif length(t) + 1 > block:
                skipped["too_long"] += 1
            else:
                out.append(t)
        return out

    train_texts, test_texts = fitting(train_texts), fitting(test_texts)
    if not train_texts or not test_texts:
        raise DataError(f"no {'training' if not train_texts else 'test'} molecule of {cfg.data} fits "
                        f"--block-size {block} and the tokenizer ({skipped}); raise --block-size")
    key = json.dumps([sets.key, tok.to_json(), notation, conds.to_json() if conds else None, cfg.property_dropout,
                      block, len(train_texts), len(test_texts)])
    spec = DataSpec(kind=KIND, shape=(block,), form="tokens",
                    info={"notation": notation, **({"conditions": conds.to_json()} if conds else {})})
    train, test, meta = token_streams(key, lambda: tok, lambda: train_texts, lambda: test_texts, spec,
                                      sets.key.split(":")[1] if sets.builtin else cfg.data, documents=True)
    prep = {"source": cfg.data, "molecules": sets.counts, "tokenizer": tok.kind, "notation": notation,
            "vocab_size": tok.vocab_size, "block_size": block, "train_molecules": len(train),
            "test_molecules": len(test), "skipped": skipped, "properties": list(conds.names) if conds else [],
            "cache": meta["cache"]}
    return Splits(train, test, prep, {TOKENIZER_FILE: tok.to_json().encode("utf-8")})


def run_tokenizer(run: Run) -> Tokenizer:
    """The tokenizer of a molecule run.

    Raises:
        DataError: when the run has none.
    """
    tok = run.artifacts.get("tokenizer")
    if not isinstance(tok, Tokenizer):
        raise DataError(f"{run.path} has no {TOKENIZER_FILE}; molecule runs need their tokenizer")
    return tok


def _sample_rows(run: Run, n: int, seed: int, batch: int, prompt: str = "",
                 options: Mapping[str, Any] | None = None, progress: Progress | None = None) -> list[Tensor]:
    model = run.model
    g = torch.Generator(device=model.device).manual_seed(seed)
    opts = dict(options or {})
    if prompt:
        opts["prompt"] = prompt
        opts["max_tokens"] = opts.get("max_tokens") or max(1, model.spec.shape[0] - len(run_tokenizer(run).split(
            prompt)))
    rows = []
    with torch.no_grad():
        for lo in range(0, n, batch):
            rows.append(model.sample(min(batch, n - lo), generator=g, **opts).cpu())
            if progress is not None:
                progress("sampling", min(lo + batch, n), n)
    return rows


@register_modality(KIND)
class MoleculeModality(Modality):
    """Molecules as one token sequence each (SMILES or SELFIES), ``int64 (N, block_size)``."""

    config_cls = MoleculeDataConfig
    forms = ("tokens",)
    capabilities = frozenset({"condition"})
    artifact_files = (TOKENIZER_FILE,)
    sample_formats = ("smi", "csv", "png")
    default_samples = 10
    prints_samples = True
    eval_options_cls = MoleculeEvalOptions
    eval_keys = ("likelihood", "moses")

    def load(self, cfg: Any, form: str) -> Splits:
        return load_molecules(cfg)

    def claims(self, path: Path) -> int:
        return 2 if path.is_file() and path.name.lower().removesuffix(".gz").endswith(SMILES_SUFFIXES) else 0

    def data_config(self, run_config: Mapping[str, Any], path: Path | None) -> Any:
        """The run's data config, with the tokenizer pointed at the run's own copy."""
        data = dict(run_config["data"])
        if path is not None and (path / TOKENIZER_FILE).is_file():
            data["tokenizer"] = str(path)
        return build(self.config_cls, data)

    def open_artifacts(self, files: Mapping[str, bytes]) -> dict[str, Any]:
        return read_artifact(files, TOKENIZER_FILE, "tokenizer", Tokenizer.from_json)

    # -- samples -----------------------------------------------------------------------------------
    def smiles(self, run: Run, samples: Tensor) -> list[str]:
        """The SMILES of each sample (as generated: invalid ones too)."""
        return decode_molecules(run_tokenizer(run), str(run.spec.info.get("notation", "smiles")), samples)

    def show(self, run: Run, samples: Tensor) -> str:
        return "".join(s + "\n" for s in self.smiles(run, samples))

    def render(self, run: Run, samples: Tensor) -> tuple[str, bytes]:
        from genlab.report.molecules import grid_png

        return "image/png", grid_png(self.smiles(run, samples))

    def write_samples(self, run: Run, samples: Tensor, path: Path, fmt: str, labels: Tensor | None = None,
                      options: Mapping[str, Any] | None = None) -> Path:
        """``smi``: one SMILES per line, plus ``<stem>.png`` (RDKit grid) and ``<stem>.csv`` (properties); ``png`` or
        ``csv`` alone otherwise. Everything is computed before any file is written."""
        for p, blob in molecule_files(self.smiles(run, samples), path, fmt).items():
            write_bytes(p, blob)
        return path

    def sample_condition(self, run: Run, n: int, condition: str, *, seed: int = 0, label: Tensor | None = None,
                         options: Mapping[str, Any] | None = None) -> Tensor:
        """``n`` molecules sampled after the prefix of the asked property bins (``qed=0.9,logp=2.5``).

        Raises:
            ConfigError: for a condition the run cannot take; CapabilityError for a family without prompts.
        """
        prompt = self.condition_prompt(run, condition)
        rows = _sample_rows(run, n, seed, n, prompt, options)
        return rows[0]

    def condition_prompt(self, run: Run, condition: str) -> str:
        """The prefix tokens of a condition for this run (checked as :meth:`Conditions.parse` says)."""
        conds = run_conditions(run.spec)
        if conds is None:
            raise ConfigError("this run was trained without --properties; train with e.g. --properties qed,logp "
                              "to sample under a --condition")
        asked = conds.parse(condition)
        if "prompt" not in run.model.sample_option_names():
            raise CapabilityError(f"family '{run.family}' cannot be prompted, so it cannot take a --condition; "
                                  "use a gpt or rnn run")
        return conds.prompt(asked)

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self, run: Run, splits: Splits, options: Any, *, batch_size: int = 100,
                 max_examples: int | None = None, seed: int = 0, progress: Progress = no_progress) -> Evaluation:
        """The base evaluation with the likelihood on ``--nll-examples`` test molecules unless ``--max-examples``
        says otherwise."""
        cap = max_examples if max_examples is not None else options.nll_examples
        return super().evaluate(run, splits, options, batch_size=batch_size, max_examples=cap, seed=seed,
                                progress=progress)

    def likelihood(self, run: Run, test: Dataset, batch_size: int) -> dict[str, Any]:
        report = super().likelihood(run, test, batch_size)
        if report.get("likelihood") != "none":
            report["nll_unit"] = "nats per molecule (its tokens and end token)"
        return report

    def sample_metrics(self, run: Run, splits: Splits, options: Any, evaluation: Evaluation, *, seed: int,
                       progress: Progress) -> None:
        from genlab.metrics.molecules import moses_metrics

        cfg = self.data_config(run.config, run.path)
        if options.samples == 0:
            evaluation.report["moses"] = {}
            return
        sets = molecule_sets(cfg)
        test_ref, sf_ref = reference_sets(sets)
        train = frozenset(sets.train)
        kl_base = kl_reference(sets) if options.kl else None
        t0 = time.perf_counter()
        draw = sampling_options(run, options)
        rows = _sample_rows(run, options.samples, seed, options.batch, options=draw, progress=progress)
        sample_seconds = time.perf_counter() - t0
        samples = torch.cat([r[:, : run.spec.shape[0]] for r in rows])
        gen = self.smiles(run, samples)
        progress("MOSES metrics", 0, 1)
        t0 = time.perf_counter()
        metrics = moses_metrics(gen, test_ref, train, test_scaffolds=sf_ref, kl_base=kl_base)
        metrics_seconds = time.perf_counter() - t0
        progress("MOSES metrics", 1, 1)
        report = evaluation.report
        report["moses"] = metrics
        report["samples_per_s"] = options.samples / max(sample_seconds, 1e-9)
        report["metrics_seconds"] = metrics_seconds
        report["reference"] = test_ref.source or f"test split ({test_ref.n} molecules)"
        if options.ceiling:
            progress("same-n ceiling", 0, 1)
            report["ceiling"] = ceiling(sets, options.samples, test_ref, sf_ref, kl_base)
            progress("same-n ceiling", 1, 1)
        if options.condition:
            report["condition"] = condition_report(self, run, options.condition, options.samples, seed,
                                                   options.batch, draw, options.guidance)
        sampled = {**draw, **({"guidance": options.guidance} if options.guidance != 1.0 else {})}
        if sampled:  # recorded only where the draws differ from plain sampling
            report["sampling"] = sampled
        evaluation.samples = samples

    def rows(self, report: Mapping[str, Any]) -> list[tuple[str, str]]:
        rows = likelihood_rows(report)
        m, c = report.get("moses") or {}, report.get("ceiling") or {}
        for key in METRIC_ORDER:
            if key in m:
                rows.append((key, fmt(m[key]) + (f"   (same-n ceiling {fmt(c[key])})" if key in c else "")))
        if "samples_per_s" in report:
            rows.append(("samples/s", f"{report['samples_per_s']:.1f}"))
            rows.append(("metric time (s)", f"{report['metrics_seconds']:.1f}"))
        if report.get("sampling"):
            rows.append(("sampled with", ", ".join(f"{k} {v:g}" for k, v in report["sampling"].items())))
        cond = report.get("condition")
        if cond:
            for name, mad in cond["conditional"]["mad"].items():
                rows.append((f"MAD {name} (asked {cond['asked'][name]:g})",
                             f"{fmt(mad)}   (unconditional {fmt(cond['unconditional']['mad'][name])})"))
            rows.append(("valid under condition", fmt(cond["conditional"]["valid"])))
        return rows

    def summary(self, report: Mapping[str, Any]) -> dict[str, Any]:
        m = report.get("moses") or {}
        return {k: m[k] for k in METRIC_ORDER if k in m}

    def columns(self) -> list[tuple[str, str, list[Column]]]:
        higher = {"FCD/Test": False, "FCD/TestSF": False, "logP": False, "SA": False, "QED": False, "weight": False}
        return [("MOSES metrics", "Samples scored against the test set (TestSF: the scaffold test set); FCD and the "
                 "property distances: lower is better.",
                 [Column(k, k, higher.get(k, True)) for k in METRIC_ORDER])]

    def report_sections(self, entries: Mapping[str, tuple[Run, Evaluation]], splits: Splits
                        ) -> list[tuple[str, str]]:
        import html

        from genlab.metrics.molecules import MOSES_TABLE
        from genlab.report.html import image_block, metric_table
        from genlab.report.molecules import histograms_png

        if not entries:
            return []
        sections = []
        rows: dict[str, dict[str, Any]] = {}
        for _, ev in entries.values():
            if ev.report.get("ceiling"):
                rows[f"same-n ceiling (n={ev.report['moses'].get('n')})"] = ev.report["ceiling"]
                break
        rows.update({f"MOSES {k} (published)": v for k, v in MOSES_TABLE.items()})
        cols = [Column(k, k) for k in METRIC_ORDER if any(k in r for r in rows.values())]
        sections.append(("Beside the MOSES table", metric_table(rows, cols) + "<p class='note'>Published MOSES rows "
                         "(30,000 samples, models trained on the full 1.58M set on GPUs) and the same-n ceiling: "
                         "real training molecules scored like the samples.</p>"))
        run0 = next(iter(entries.values()))[0]
        test = molecule_sets(self.data_config(run0.config, run0.path)).test
        real = properties(list(test[:2000]), ("logp", "qed", "sa", "mw"))
        gen = {}
        for name, (run, ev) in entries.items():
            if ev.samples is not None:
                gen[name] = properties(self.smiles(run, ev.samples[:2000]), ("logp", "qed", "sa", "mw"))
        png = histograms_png(real, {k: {p: v[np.isfinite(v)] for p, v in g.items()} for k, g in gen.items()})
        if png is not None:
            sections.append(("Property histograms", image_block("logP, QED, SA, weight: test molecules vs samples",
                                                                png)
                             + f"<p class='note'>{html.escape('valid samples only; 2,000 per set at most')}</p>"))
        return sections


#: the rows of the metric table, in MOSES' order
METRIC_ORDER = ("valid", "unique@1000", "unique@10000", "Novelty", "FCD/Test", "FCD/TestSF", "SNN/Test",
                "SNN/TestSF", "Frag/Test", "Frag/TestSF", "Scaf/Test", "Scaf/TestSF", "IntDiv", "IntDiv2",
                "Filters", "logP", "SA", "QED", "weight", "KL")


def reference_sets(sets: MoleculeSets) -> tuple[Any, Any]:
    """Statistics of the test set (and of the MOSES scaffold test set for the built-in data): molsets' shipped
    statistics for MOSES, computed once and cached for anything else."""
    from genlab.metrics.molecules import cached_reference, moses_reference, reference

    if sets.builtin in ("moses", "moses-100k"):
        return (cached_reference("moses:test", lambda: moses_reference("test")),
                cached_reference("moses:test_scaffolds", lambda: moses_reference("test_scaffolds")))
    return cached_reference(f"test:{sets.key}", lambda: reference(sets.test, f"test split of {sets.key}")), None


def kl_reference(sets: MoleculeSets, n: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """GuacaMol KL descriptors of a random training sample (seed 42, at most ``n`` molecules), cached."""
    from genlab.metrics.molecules import kl_descriptors, kl_set

    folder = cache_folder(f"kl:{sets.key}:{n}")
    path = folder / "kl.npz"
    if not path.is_file():
        pick = np.random.default_rng(42).permutation(len(sets.train))[:n]
        d, nn = kl_descriptors(kl_set([sets.train[i] for i in pick]))
        np.savez(folder / "kl.tmp.npz", d=d, nn=nn)
        (folder / "kl.tmp.npz").replace(path)
    with np.load(path) as z:
        return z["d"], z["nn"]


def ceiling(sets: MoleculeSets, n: int, test_ref: Any, sf_ref: Any,
            kl_base: tuple[np.ndarray, np.ndarray] | None) -> dict[str, Any]:
    """The MOSES metrics of ``n`` real training molecules (seed 1) scored like samples (cached): what a model
    that reproduces the training distribution would get at this sample size."""
    from genlab.metrics.molecules import moses_metrics

    folder = cache_folder(f"ceiling:{sets.key}:{n}:{kl_base is not None}:{sf_ref is not None}")
    path = folder / "ceiling.json"
    if not path.is_file():
        pick = np.random.default_rng(1).permutation(len(sets.train))[:n]
        m = moses_metrics([sets.train[i] for i in pick], test_ref, frozenset(sets.train), test_scaffolds=sf_ref,
                          kl_base=kl_base)
        write_bytes(path, json.dumps(m).encode())
    return dict(json.loads(path.read_text()))


def sampling_options(run: Run, options: MoleculeEvalOptions) -> dict[str, Any]:
    """The family's sampling options an evaluation asks for (``temperature``; empty at the defaults).

    Raises:
        ConfigError: for a temperature or guidance the run's family does not take.
    """
    names = run.model.sample_option_names()
    for name, default in (("temperature", 1.0), ("guidance", 1.0)):
        if getattr(options, name) != default and name not in names:
            raise ConfigError(f"family '{run.family}' takes no --{name}; use a gpt or rnn run")
    return {"temperature": options.temperature} if options.temperature != 1.0 else {}


def condition_report(mod: MoleculeModality, run: Run, condition: str, n: int, seed: int, batch: int,
                     options: Mapping[str, Any] | None = None, guidance: float = 1.0) -> dict[str, Any]:
    """Mean absolute deviation of the properties of ``n`` molecules sampled under ``condition`` from the asked
    values, and of ``n`` unconditional samples of the same model, with the share of valid molecules of each; both
    drawn with the sampling ``options``, the conditional ones with classifier-free ``guidance`` of the prompt."""
    prompt = mod.condition_prompt(run, condition)
    asked = run_conditions(run.spec).parse(condition)  # type: ignore[union-attr]
    out: dict[str, Any] = {"condition": condition, "asked": asked}
    for what, p in (("conditional", prompt), ("unconditional", "")):
        opts = {**(options or {}), **({"guidance": guidance} if p and guidance != 1.0 else {})}
        rows = _sample_rows(run, n, seed, batch, p, opts)
        smiles = [s for r in rows for s in mod.smiles(run, r)]
        values = properties(smiles, asked)
        ok = np.isfinite(next(iter(values.values())))
        out[what] = {"valid": float(ok.mean()), "n": n,
                     "mad": {k: float(np.abs(v[ok] - asked[k]).mean()) if ok.any() else float("nan")
                             for k, v in values.items()}}
    return out
