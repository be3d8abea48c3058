"""Molecule data: SMILES files, RDKit canonicalisation, SELFIES, molecular properties and the MOSES files.

Everything chemical goes through RDKit (and SELFIES through ``selfies``), both in the ``molecules`` extra and imported
only inside the functions that need them, so genlab imports without them and a user without them gets one line.

The built-in MOSES set (Polykovskiy et al., "Molecular Sets (MOSES)", 2020, arXiv:1811.12823) is read from the data
files inside the ``molsets`` wheel (``pip install --no-deps molsets``): its package no longer imports with current
RDKit and pandas, so its files are found through the installed distribution's file list and never imported.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from genlab.data.vocab import Tokenizer
from genlab.errors import ConfigError, DataError, ExtraMissing
from genlab.extras import require

#: ``pip`` line that brings the MOSES data files (the package itself is never imported)
MOLSETS_HINT = "pip install --no-deps 'molsets==0.3.1'"
#: split sizes of the MOSES files, checked when they are read
MOSES_SIZES = {"train": 1_584_663, "test": 176_074, "test_scaffolds": 176_225}


def chem() -> Any:
    """``rdkit.Chem`` with RDKit's per-molecule warnings silenced.

    Raises:
        ExtraMissing: without RDKit (``pip install 'genlab[molecules]'``).
    """
    mod = require("rdkit.Chem", "molecules", "molecule data")
    require("rdkit.RDLogger", "molecules").DisableLog("rdApp.*")
    return mod


def mol(smiles: str) -> Any:
    """An RDKit molecule of ``smiles``, or None for an empty or invalid SMILES (MOSES' ``get_mol``: parsed and
    sanitized)."""
    if not smiles:
        return None
    m = chem().MolFromSmiles(smiles)
    if m is None:
        return None
    try:
        chem().SanitizeMol(m)
    except ValueError:
        return None
    return m


def canonical(smiles: str, isomeric: bool = True) -> str | None:
    """RDKit's canonical SMILES of ``smiles`` (None when invalid); ``isomeric=False`` drops stereochemistry."""
    m = mol(smiles)
    return None if m is None else chem().MolToSmiles(m, isomericSmiles=isomeric)


# -- SELFIES ---------------------------------------------------------------------------------------

def to_selfies(smiles: str) -> str | None:
    """The SELFIES string of a SMILES (None when ``selfies`` cannot encode it).

    References:
        Krenn et al., "Self-Referencing Embedded Strings (SELFIES)", 2020, arXiv:1905.13741.
    """
    sf = require("selfies", "molecules", "the selfies tokenizer")
    try:
        return sf.encoder(smiles)
    except Exception:
        return None


def from_selfies(text: str) -> str:
    """The SMILES of a SELFIES string ("" when it decodes to nothing)."""
    sf = require("selfies", "molecules", "the selfies tokenizer")
    try:
        return sf.decoder(text) or ""
    except Exception:
        return ""


# -- properties ------------------------------------------------------------------------------------

def _sa(m: Any) -> float:
    sascorer = require("rdkit.Contrib.SA_Score.sascorer", "molecules", "the SA score")
    return float(sascorer.calculateScore(m))


def _qed(m: Any) -> float:
    from rdkit.Chem import QED

    return float(QED.qed(m))


def _logp(m: Any) -> float:
    return float(require("rdkit.Chem.Crippen", "molecules").MolLogP(m))


def _tpsa(m: Any) -> float:
    from rdkit.Chem import rdMolDescriptors

    return float(rdMolDescriptors.CalcTPSA(m))


def _mw(m: Any) -> float:
    return float(require("rdkit.Chem.Descriptors", "molecules").MolWt(m))


#: molecular properties a model can be conditioned on and that samples are described by: name → (function of an
#: RDKit molecule, what it is)
PROPERTIES: dict[str, tuple[Callable[[Any], float], str]] = {
    "logp": (_logp, "Crippen logP (Wildman & Crippen 1999)"),
    "qed": (_qed, "QED drug-likeness (Bickerton et al. 2012)"),
    "sa": (_sa, "synthetic accessibility, 1 easy … 10 hard (Ertl & Schuffenhauer 2009; RDKit contrib sascorer)"),
    "tpsa": (_tpsa, "topological polar surface area, Å² (Ertl et al. 2000)"),
    "mw": (_mw, "average molecular weight, Da"),
}


def map_molecules(fn: Callable[[Any], Any], items: Sequence[Any], jobs: int = 0, chunk: int = 256) -> list[Any]:
    """``[fn(x) for x in items]``, spread over ``jobs`` worker processes for large inputs (RDKit works on one core;
    0 = every core). ``fn`` must be a module-level function."""
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(items) < 4 * chunk:
        return [fn(x) for x in items]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return pool.map(fn, items, chunksize=chunk)


def _properties_of(args: tuple[str, tuple[str, ...]]) -> list[float]:
    smiles, names = args
    m = mol(smiles)
    return [math.nan] * len(names) if m is None else [PROPERTIES[n][0](m) for n in names]


def properties(smiles: Sequence[str], names: Iterable[str], jobs: int = 0) -> dict[str, np.ndarray]:
    """Properties ``names`` of each SMILES → ``name → (N,)`` float64 (NaN for invalid molecules)."""
    names = tuple(names)
    values = np.array(map_molecules(_properties_of, [(s, names) for s in smiles], jobs),
                      dtype=np.float64).reshape(len(smiles), len(names))
    return {n: values[:, j] for j, n in enumerate(names)}


# -- files -----------------------------------------------------------------------------------------

SMILES_SUFFIXES = (".smi", ".smiles", ".csv", ".tsv")


# -- property conditions -------------------------------------------------------------------------

@dataclass(frozen=True)
class Conditions:
    """Property bins a model was trained with: their names (in prefix order), bin edges and value ranges."""

    names: tuple[str, ...]
    edges: dict[str, list[float]]
    ranges: dict[str, tuple[float, float]]

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "edges": self.edges, "ranges": {k: list(v) for k, v in self.ranges.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Conditions:
        return cls(tuple(d["names"]), {k: list(v) for k, v in d["edges"].items()},
                   {k: (float(v[0]), float(v[1])) for k, v in d["ranges"].items()})

    @classmethod
    def fit(cls, values: Mapping[str, np.ndarray], bins: int) -> Conditions:
        """Quantile bins (``bins`` per property) and the value ranges of training values."""
        edges, ranges = {}, {}
        for name, v in values.items():
            v = v[np.isfinite(v)]
            inner = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
            edges[name] = [float(e) for e in inner]
            ranges[name] = (float(v.min()), float(v.max()))
        return cls(tuple(values), edges, ranges)

    def bin(self, name: str, value: float) -> int:
        """The bin index of a value of property ``name``."""
        return int(np.searchsorted(self.edges[name], value, side="right"))

    def token(self, name: str, value: float) -> str:
        """The prefix token of a value, e.g. ``<qed:27>``."""
        return f"<{name}:{self.bin(name, value)}>"

    def all_tokens(self) -> list[str]:
        """Every prefix token (so the vocabulary holds bins that no training molecule happened to fill)."""
        return [f"<{n}:{i}>" for n in self.names for i in range(len(self.edges[n]) + 1)]

    def parse(self, condition: str) -> dict[str, float]:
        """``qed=0.9,logp=2.5`` → ``{"qed": 0.9, "logp": 2.5}``, checked against the trained properties.

        Raises:
            ConfigError: for a malformed condition, an unknown or untrained property, or a value outside the
                range of the training data.
        """
        asked: dict[str, float] = {}
        for part in (p.strip() for p in condition.split(",")):
            name, eq, value = part.partition("=")
            name = name.strip().lower()
            if not eq or not name:
                raise ConfigError(f"cannot read --condition {condition!r}; write e.g. qed=0.9,logp=2.5")
            if name not in PROPERTIES:
                raise ConfigError(f"unknown property {name!r} in --condition; choose from {', '.join(PROPERTIES)}")
            if name not in self.names:
                raise ConfigError(f"this run was trained with --properties {','.join(self.names)}; it cannot be "
                                  f"conditioned on {name}")
            try:
                v = float(value)
            except ValueError:
                raise ConfigError(f"bad value {value.strip()!r} for {name} in --condition: expected a number"
                                  ) from None
            lo, hi = self.ranges[name]
            if not (math.isfinite(v) and lo <= v <= hi):
                raise ConfigError(f"{name}={value.strip()} is outside the training data's range of {name} "
                                  f"({lo:.3g} … {hi:.3g})")
            asked[name] = v
        return asked

    def prompt(self, asked: Mapping[str, float]) -> str:
        """The prefix of an asked condition, in training order."""
        return "".join(self.token(n, asked[n]) for n in self.names if n in asked)


def decode_molecules(tok: Tokenizer, notation: str, samples: Any) -> list[str]:
    """The SMILES of sampled token rows: property tokens dropped, cut at the first ``<|endoftext|>`` after the
    molecule began, SELFIES decoded ("" for a row with no molecule)."""
    out = []
    for row in np.asarray(samples).tolist():
        ids: list[int] = []
        for i in row:
            if i == tok.eot_id:
                if ids:
                    break
                continue
            ids.append(i)
        text = tok.decode(ids)
        if tok.kind != "char":
            text = "".join(s for s in tok.split(text) if not s.startswith("<"))
        out.append(from_selfies(text) if notation == "selfies" else text)
    return out


def properties_csv(smiles: Sequence[str]) -> bytes:
    """CSV of each SMILES with its canonical form, validity and properties (empty cells when invalid)."""
    names = tuple(PROPERTIES)
    values = properties(smiles, names)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["smiles", "canonical", "valid", *names])
    for i, s in enumerate(smiles):
        c = canonical(s)
        w.writerow([s, c or "", int(c is not None),
                    *("" if not np.isfinite(values[n][i]) else f"{values[n][i]:.4f}" for n in names)])
    return buf.getvalue().encode("utf-8")


def molecule_files(smiles: Sequence[str], path: Path, fmt: str) -> dict[Path, bytes]:
    """The files of sampled molecules, computed before any is written: ``smi`` — one SMILES per line at ``path``,
    plus ``<stem>.png`` (an RDKit grid) and ``<stem>.csv`` (:func:`properties_csv`); ``png`` or ``csv`` alone."""
    from genlab.report.molecules import grid_png

    files: dict[Path, bytes] = {}
    if fmt in ("smi", "png"):
        files[path if fmt == "png" else path.with_suffix(".png")] = grid_png(smiles)
    if fmt in ("smi", "csv"):
        files[path if fmt == "csv" else path.with_suffix(".csv")] = properties_csv(smiles)
    if fmt == "smi":
        files[path] = "".join(s + "\n" for s in smiles).encode("utf-8")
    return files


def read_smiles(path: Path, column: str = "") -> list[str]:
    """The SMILES strings of a file: ``.smi``/``.smiles`` (the first field of each line; a ``smiles`` header line
    is skipped) or ``.csv``/``.tsv`` (the column ``column``, default the one named like ``smiles``).

    Raises:
        DataError: for an unreadable file, a missing column, or a file without any entry.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} ({str(e).splitlines()[0]})") from None
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        rows = list(csv.reader(text.splitlines(), delimiter="\t" if name.endswith(".tsv") else ","))
        if not rows:
            raise DataError(f"{path} is empty; give a file with one SMILES per line or a CSV with a SMILES column")
        header = [h.strip() for h in rows[0]]
        wanted = column or next((h for h in header if h.lower() in ("smiles", "canonical_smiles", "smi")), "")
        if wanted not in header:
            raise DataError(f"{path} has no column {wanted or 'named smiles'} (columns: {', '.join(header)}); "
                            "pick one with --column")
        j = header.index(wanted)
        smiles = [r[j].strip() for r in rows[1:] if len(r) > j and r[j].strip()]
    else:
        smiles = [line.split()[0] for line in text.splitlines() if line.strip()]
        if smiles and smiles[0].lower() == "smiles":
            smiles = smiles[1:]
    if not smiles:
        raise DataError(f"{path} holds no molecules; give a file with one SMILES per line")
    return smiles


def molsets_file(name: str) -> Path:
    """A data file of the installed ``molsets`` wheel (e.g. ``moses/dataset/data/test.csv.gz``), found through the
    distribution's file list without importing its package.

    Raises:
        ExtraMissing: when molsets is not installed.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("molsets")
    except metadata.PackageNotFoundError:
        raise ExtraMissing(f"the MOSES data comes from the molsets wheel: {MOLSETS_HINT}") from None
    p = Path(str(dist.locate_file(name)))
    if not p.is_file():
        raise ExtraMissing(f"{name} is missing from the installed molsets; reinstall it: {MOLSETS_HINT}")
    return p


@cache
def moses_split(split: str) -> tuple[str, ...]:
    """The SMILES of a MOSES split (``train``, ``test``, ``test_scaffolds``) as the wheel ships them.

    Raises:
        DataError: when the file does not have the published number of molecules.
    """
    path = molsets_file(f"moses/dataset/data/{split}.csv.gz")
    with gzip.open(path, "rt") as f:
        lines = f.read().split()
    smiles = tuple(lines[1:]) if lines and lines[0] == "SMILES" else tuple(lines)
    if len(smiles) != MOSES_SIZES[split]:
        raise DataError(f"{path} holds {len(smiles)} molecules, not the {MOSES_SIZES[split]} of MOSES {split}")
    return smiles


# -- canonical splits, cached ----------------------------------------------------------------------

def cache_root() -> Path:
    """Folder of cached molecule data: ``$GENLAB_CACHE/molecules`` or ``~/.cache/genlab/molecules``."""
    return Path(os.environ.get("GENLAB_CACHE", Path.home() / ".cache" / "genlab")) / "molecules"


def cache_folder(key: str) -> Path:
    """The cache folder of a key (created)."""
    folder = cache_root() / hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write strings one per line atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(s + "\n" for s in lines), encoding="utf-8")
    os.replace(tmp, path)


def read_lines(path: Path) -> list[str]:
    """The lines :func:`write_lines` wrote."""
    return path.read_text(encoding="utf-8").splitlines()


def canonical_set(smiles: Sequence[str], what: str, *, strict: bool) -> tuple[list[str], dict[str, int]]:
    """Canonical SMILES of the valid molecules of ``smiles``, duplicates dropped (first kept), with counts.

    Arguments:
        smiles: the raw strings.
        what: where they come from (for messages).
        strict: raise when most molecules are invalid (user data), not only when all are.

    Returns:
        (canonical SMILES, ``{"read", "invalid", "duplicates", "kept"}``).

    Raises:
        DataError: for no valid molecule at all, or (``strict``) more invalid than valid ones.
    """
    out: list[str] = []
    seen: set[str] = set()
    invalid = 0
    for c in map_molecules(canonical, list(smiles)):
        if c is None:
            invalid += 1
        elif c not in seen:
            seen.add(c)
            out.append(c)
    counts = {"read": len(smiles), "invalid": invalid, "duplicates": len(smiles) - invalid - len(out),
              "kept": len(out)}
    if not out:
        raise DataError(f"{what} holds no valid molecule ({invalid} of {len(smiles)} SMILES do not parse)")
    if strict and invalid > len(smiles) - invalid:
        raise DataError(f"most molecules of {what} are invalid ({invalid} of {len(smiles)} SMILES do not parse); "
                        "check the file and --column")
    return out, counts


def cached_canonical(key: str, make: Callable[[], dict[str, list[str]]], what: str, *, strict: bool
                     ) -> tuple[dict[str, list[str]], dict[str, Any], Path]:
    """Canonical splits of a source, computed once and cached under :func:`cache_root` by ``key``.

    Arguments:
        key: everything the splits depend on (file stats, split options).
        make: returns the raw SMILES of each split, e.g. ``{"train": [...], "test": [...]}``.
        what: the source, for messages.
        strict: see :func:`canonical_set`.

    Returns:
        (canonical SMILES per split, counts per split, the cache folder).
    """
    folder = cache_folder("canonical:" + key)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raw = make()
        counts: dict[str, Any] = {}
        for name, smiles in raw.items():
            kept, counts[name] = canonical_set(smiles, f"{what} ({name})", strict=strict)
            write_lines(folder / f"{name}.smi", kept)
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps({"source": what, "counts": counts}))
        os.replace(tmp, meta_path)
    meta = json.loads(meta_path.read_text())
    splits = {name: read_lines(folder / f"{name}.smi") for name in meta["counts"]}
    return splits, meta, folder


def cached_properties(folder: Path, split: str, smiles: Sequence[str], names: Iterable[str]
                      ) -> dict[str, np.ndarray]:
    """Properties of a cached split's molecules, computed once per property and kept beside it."""
    out: dict[str, np.ndarray] = {}
    missing = [n for n in names if not (folder / f"{split}.{n}.npy").is_file()]
    if missing:
        values = properties(smiles, missing)
        for n, v in values.items():
            tmp = folder / f"{split}.{n}.tmp.npy"
            np.save(tmp, v)
            os.replace(tmp, folder / f"{split}.{n}.npy")
    for n in names:
        out[n] = np.load(folder / f"{split}.{n}.npy")
    return out
