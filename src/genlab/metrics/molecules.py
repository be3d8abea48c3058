"""The MOSES metric set and GuacaMol's KL score, written after their published definitions.

For generated SMILES ``G`` (as sampled, invalid ones included), a reference set ``R`` (the test set) and the
training set ``T``, with ``V`` the canonical SMILES of the valid molecules of ``G`` (duplicates kept, in order):

* ``valid`` — share of ``G`` that RDKit parses and sanitizes; ``unique@k`` — ``|set(V[:k])| / |V[:k]|``;
  ``Novelty`` — share of ``set(V)`` not in ``T``.
* ``FCD`` — Fréchet distance between Gaussians fitted to ChemNet features of ``V`` and of ``R``
  (:mod:`genlab.metrics.chemnet`; the Fréchet math is :func:`genlab.metrics.distribution.frechet_distance`).
* ``SNN`` — mean over ``V`` of the Tanimoto similarity to the nearest molecule of ``R`` (Morgan radius 2, 1,024
  bits; two empty fingerprints count as similarity 1).
* ``Frag`` / ``Scaf`` — cosine similarity of the counts of BRICS fragments / Bemis–Murcko scaffolds (with at least
  two rings) in ``V`` and in ``R``.
* ``IntDiv_p`` — ``1 − mean_j (mean_i T(v_i, v_j)^p)^(1/p)`` over all pairs of ``V`` (the pair of a molecule with
  itself included), ``p = 1, 2``.
* ``Filters`` — share of ``V`` that passes the MCF and PAINS substructure filters (the lists in the molsets data)
  and has only C, N, S, O, F, Cl, Br, H, no charge and no ring of 8 or more atoms.
* ``logP``, ``SA``, ``QED``, ``weight`` — 1-Wasserstein distance between the property values of ``V`` and of ``R``.
* ``KL`` — GuacaMol's KL-divergence score: ``mean_d exp(−KL(P_T,d ‖ P_V,d))`` over nine physico-chemical
  descriptors and the nearest-neighbour similarity inside each set (ECFP4, 4,096 bits), continuous descriptors by
  Gaussian KDE on 1,000 points, integer ones by 10-bin histograms, both sets canonical without stereochemistry.

The reference side of each metric is a :class:`Reference` (statistics of ``R``), computed once per reference set
and cached, or read from the statistics that molsets ships for the MOSES test sets.

References:
    Polykovskiy et al., "Molecular Sets (MOSES): A Benchmarking Platform for Molecular Generation Models", 2020,
    arXiv:1811.12823.
    Brown et al., "GuacaMol: Benchmarking Models for de Novo Molecular Design", 2019, arXiv:1811.09621.
    Preuer et al., "Fréchet ChemNet Distance", 2018, arXiv:1803.09518.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.data.molecules import cache_folder, chem, map_molecules, mol, molsets_file
from genlab.extras import require
from genlab.metrics.chemnet import chemnet_features
from genlab.metrics.distribution import frechet_distance, gaussian_stats

#: published MOSES results (mean over three runs, the molsets README table): model → metric → value
MOSES_TABLE: dict[str, dict[str, float]] = {
    name: dict(zip(("valid", "unique@1000", "unique@10000", "FCD/Test", "FCD/TestSF", "SNN/Test", "SNN/TestSF",
                    "Frag/Test", "Frag/TestSF", "Scaf/Test", "Scaf/TestSF", "IntDiv", "IntDiv2", "Filters",
                    "Novelty"), row, strict=True))
    for name, row in {
        "Train": (1.0, 1.0, 1.0, 0.008, 0.4755, 0.6419, 0.5859, 1.0, 0.9986, 0.9907, 0.0, 0.8567, 0.8508, 1.0, 1.0),
        "HMM": (0.076, 0.623, 0.5671, 24.4661, 25.4312, 0.3876, 0.3795, 0.5754, 0.5681, 0.2065, 0.049, 0.8466,
                0.8104, 0.9024, 0.9994),
        "NGram": (0.2376, 0.974, 0.9217, 5.5069, 6.2306, 0.5209, 0.4997, 0.9846, 0.9815, 0.5302, 0.0977, 0.8738,
                  0.8644, 0.9582, 0.9694),
        "Combinatorial": (1.0, 0.9983, 0.9909, 4.2375, 4.5113, 0.4514, 0.4388, 0.9912, 0.9904, 0.4445, 0.0865,
                          0.8732, 0.8666, 0.9557, 0.9878),
        "CharRNN": (0.9748, 1.0, 0.9994, 0.0732, 0.5204, 0.6015, 0.5649, 0.9998, 0.9983, 0.9242, 0.1101, 0.8562,
                    0.8503, 0.9943, 0.8419),
        "AAE": (0.9368, 1.0, 0.9973, 0.5555, 1.0572, 0.6081, 0.5677, 0.991, 0.9905, 0.9022, 0.0789, 0.8557, 0.8499,
                0.996, 0.7931),
        "VAE": (0.9767, 1.0, 0.9984, 0.099, 0.567, 0.6257, 0.5783, 0.9994, 0.9984, 0.9386, 0.0588, 0.8558, 0.8498,
                0.997, 0.6949),
        "JTN-VAE": (1.0, 1.0, 0.9996, 0.3954, 0.9382, 0.5477, 0.5194, 0.9965, 0.9947, 0.8964, 0.1009, 0.8551,
                    0.8493, 0.976, 0.9143),
        "LatentGAN": (0.8966, 1.0, 0.9968, 0.2968, 0.8281, 0.5371, 0.5132, 0.9986, 0.9972, 0.8867, 0.1072, 0.8565,
                      0.8505, 0.9735, 0.9498),
    }.items()
}

#: properties compared by Wasserstein distance (MOSES names → RDKit function names used below)
WASSERSTEIN = ("logP", "SA", "QED", "weight")
#: GuacaMol's KL descriptors: the first four continuous, the rest integer-valued
KL_DESCRIPTORS = ("BertzCT", "MolLogP", "MolWt", "TPSA", "NumHAcceptors", "NumHDonors", "NumRotatableBonds",
                  "NumAliphaticRings", "NumAromaticRings")
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})


# -- per-molecule functions ------------------------------------------------------------------------

def moses_property(name: str, m: Any) -> float:
    """One of MOSES' Wasserstein properties of a molecule: ``logP`` (Crippen), ``SA``, ``QED``, ``weight``."""
    from genlab.data.molecules import PROPERTIES

    return PROPERTIES[{"logP": "logp", "SA": "sa", "QED": "qed", "weight": "mw"}[name]][0](m)


def morgan_fps(mols: Sequence[Any], bits: int = 1024, radius: int = 2) -> np.ndarray:
    """Morgan bit fingerprints → ``(N, bits)`` uint8 (RDKit's ``GetMorganFingerprintAsBitVect``)."""
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    out = np.zeros((len(mols), bits), dtype=np.uint8)
    for i, m in enumerate(mols):
        out[i] = gen.GetFingerprintAsNumPy(m)
    return out


def brics_fragments(m: Any) -> list[str]:
    """SMILES of the BRICS fragments of a molecule (RDKit ``FragmentOnBRICSBonds``)."""
    brics = require("rdkit.Chem.AllChem", "molecules")
    return chem().MolToSmiles(brics.FragmentOnBRICSBonds(m)).split(".")


def scaffold(m: Any, min_rings: int = 2) -> str | None:
    """Bemis–Murcko scaffold SMILES of a molecule, None when it has fewer than ``min_rings`` rings."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        sc = MurckoScaffold.GetScaffoldForMol(m)
    except (ValueError, RuntimeError):
        return None
    smiles = chem().MolToSmiles(sc)
    if smiles == "" or sc.GetRingInfo().NumRings() < min_rings:
        return None
    return smiles


@cache
def filter_patterns() -> tuple[Any, ...]:
    """The MCF and PAINS SMARTS patterns of the molsets data (``mcf.csv``, ``wehi_pains.csv``), compiled."""
    patterns: list[str] = []
    with open(molsets_file("moses/metrics/mcf.csv"), newline="") as f:
        patterns += [row["smarts"].strip() for row in csv.DictReader(f)]
    with open(molsets_file("moses/metrics/wehi_pains.csv"), newline="") as f:
        patterns += [row[0].strip() for row in csv.reader(f) if row]
    return tuple(chem().MolFromSmarts(p) for p in patterns)


def passes_filters(m: Any) -> bool:
    """Whether a molecule passes MOSES' filters: allowed atoms only, no charge, no ring of ≥ 8 atoms, no MCF or
    PAINS match (on the molecule with explicit hydrogens), and a SMILES that parses back."""
    Chem = chem()
    rings = m.GetRingInfo()
    if rings.NumRings() and any(len(r) >= 8 for r in rings.AtomRings()):
        return False
    atoms = m.GetAtoms()
    if any(a.GetFormalCharge() != 0 for a in atoms) or any(a.GetSymbol() not in ALLOWED_ATOMS for a in atoms):
        return False
    h = Chem.AddHs(m)
    if any(h.HasSubstructMatch(p) for p in filter_patterns()):
        return False
    smiles = Chem.MolToSmiles(m, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None


# -- set functions ---------------------------------------------------------------------------------

def fraction_valid(smiles: Sequence[str]) -> float:
    """Share of SMILES that RDKit parses and sanitizes."""
    return sum(mol(s) is not None for s in smiles) / len(smiles) if smiles else 0.0


def fraction_unique(canonical: Sequence[str], k: int | None = None) -> float:
    """``unique@k``: distinct molecules among the first ``k`` valid ones (all of them when fewer)."""
    head = list(canonical[:k] if k else canonical)
    return len(set(head)) / len(head) if head else 0.0


def novelty(canonical: Sequence[str], train: set[str] | frozenset[str]) -> float:
    """Share of the distinct valid molecules that are not in the (canonical) training set."""
    distinct = set(canonical)
    return len(distinct - train) / len(distinct) if distinct else 0.0


def _bits(packed: np.ndarray, lo: int, hi: int, bits: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed[lo:hi], axis=1, count=bits).astype(np.float32))


def tanimoto_agg(ref: np.ndarray, gen: np.ndarray, *, agg: str = "max", p: int = 1, bits: int = 1024,
                 chunk: int = 4096) -> np.ndarray:
    """For each generated fingerprint, the max (``agg="max"``) or the power mean ``(mean_i T^p)^(1/p)``
    (``agg="mean"``) of its Tanimoto similarities to every reference fingerprint → ``(len(gen),)``.

    Arguments:
        ref, gen: fingerprints packed with ``np.packbits`` along axis 1, ``(N, bits / 8)`` uint8.
        agg, p: the aggregate, see above.
        bits: unpacked fingerprint length.
        chunk: fingerprints per matrix block (float32 products, exact for bit counts).
    """
    out = np.zeros(len(gen), dtype=np.float64)
    for j in range(0, len(gen), chunk):
        g = _bits(gen, j, j + chunk, bits)  # (b, bits)
        g_sum = g.sum(1)
        acc = torch.zeros(len(g), dtype=torch.float64)
        for i in range(0, len(ref), chunk):
            r = _bits(ref, i, i + chunk, bits)
            both = r @ g.T  # (a, b) common bits
            jac = both / (r.sum(1, keepdim=True) + g_sum[None] - both)
            jac = torch.nan_to_num(jac, nan=1.0)  # two empty fingerprints
            if agg == "max":
                acc = torch.maximum(acc, jac.max(0).values.double())
            else:
                acc += (jac.double() ** p).sum(0)
        if agg == "mean":
            acc = (acc / len(ref)) ** (1.0 / p)
        out[j : j + len(g)] = acc.numpy()
    return out


def internal_diversity(fps: np.ndarray, p: int = 1) -> float:
    """``IntDiv_p = 1 − mean_j (mean_i T(v_i, v_j)^p)^(1/p)`` over all pairs of a set (packed fingerprints)."""
    return float(1 - tanimoto_agg(fps, fps, agg="mean", p=p).mean())


def cosine_similarity(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Cosine similarity of two count vectors given as ``key → count`` (missing keys count 0); NaN when either
    is empty."""
    if not a or not b:
        return float("nan")
    keys = sorted(set(a) | set(b))
    x = np.array([a.get(k, 0) for k in keys], dtype=np.float64)
    y = np.array([b.get(k, 0) for k in keys], dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def wasserstein(u: Sequence[float] | np.ndarray, v: Sequence[float] | np.ndarray) -> float:
    """1-Wasserstein distance between two empirical 1-D distributions, ``∫ |F_u(x) − F_v(x)| dx``."""
    u, v = np.sort(np.asarray(u, dtype=np.float64)), np.sort(np.asarray(v, dtype=np.float64))
    grid = np.sort(np.concatenate([u, v]))
    fu = np.searchsorted(u, grid[:-1], side="right") / len(u)
    fv = np.searchsorted(v, grid[:-1], side="right") / len(v)
    return float(np.sum(np.abs(fu - fv) * np.diff(grid)))


# -- the reference side ----------------------------------------------------------------------------

@dataclass
class Reference:
    """Statistics of a reference set that the MOSES metrics compare against.

    Arguments:
        n: molecules in the set.
        mu, sigma: mean and covariance of their ChemNet features.
        fps: Morgan fingerprints (radius 2, 1,024 bits), packed with ``np.packbits``.
        frag, scaf: counts of BRICS fragments and of Bemis–Murcko scaffolds.
        props: ``logP``, ``SA``, ``QED``, ``weight`` of each molecule.
        source: where the statistics come from.
    """

    n: int
    mu: np.ndarray
    sigma: np.ndarray
    fps: np.ndarray
    frag: dict[str, int]
    scaf: dict[str, int]
    props: dict[str, np.ndarray]
    source: str = ""

    def save(self, folder: Path) -> None:
        """Write the statistics into ``folder`` (an ``.npz`` without pickles, counts as JSON), atomically."""
        arrays: dict[str, Any] = {"mu": self.mu, "sigma": self.sigma, "fps": self.fps,
                                  **{f"prop_{k}": v for k, v in self.props.items()}}
        tmp = folder / "reference.tmp.npz"
        np.savez(tmp, **arrays)
        (folder / "counts.json").write_text(json.dumps({"n": self.n, "frag": self.frag, "scaf": self.scaf,
                                                        "source": self.source}))
        os.replace(tmp, folder / "reference.npz")

    @classmethod
    def load(cls, folder: Path) -> Reference:
        """Read what :meth:`save` wrote."""
        counts = json.loads((folder / "counts.json").read_text())
        with np.load(folder / "reference.npz", allow_pickle=False) as z:
            props = {k[5:]: z[k] for k in z.files if k.startswith("prop_")}
            return cls(int(counts["n"]), z["mu"], z["sigma"], z["fps"], counts["frag"], counts["scaf"], props,
                       counts.get("source", ""))


def reference(canonical: Sequence[str], source: str = "", jobs: int = 0) -> Reference:
    """The statistics of a reference set of canonical SMILES (valid ones only are used)."""
    recs = [r for r in map_molecules(molecule_record, list(canonical), jobs) if r is not None]
    mu, sigma = gaussian_stats(chemnet_features([r.canonical for r in recs]))
    frag: Counter[str] = Counter()
    for r in recs:
        frag.update(r.fragments)
    scaf = Counter(r.scaffold for r in recs if r.scaffold is not None)
    props = {name: np.array([r.props[i] for r in recs]) for i, name in enumerate(WASSERSTEIN)}
    return Reference(len(recs), mu, sigma, np.stack([r.fp for r in recs]), dict(frag), dict(scaf), props, source)


def moses_reference(split: str) -> Reference:
    """The statistics molsets ships for a MOSES test set (``test`` or ``test_scaffolds``), as its
    ``get_all_metrics`` uses them by default (computed by MOSES with the same definitions as :func:`reference`)."""
    path = molsets_file(f"moses/dataset/data/{split}_stats.npz")
    stats = np.load(path, allow_pickle=True)["stats"].item()  # the wheel's own file: Counters and lists inside
    return Reference(len(stats["logP"]["values"]), np.asarray(stats["FCD"]["mu"]), np.asarray(stats["FCD"]["sigma"]),
                     np.packbits(np.asarray(stats["SNN"]["fps"], dtype=np.uint8), axis=1),
                     {str(k): int(v) for k, v in stats["Frag"]["frag"].items()},
                     {str(k): int(v) for k, v in stats["Scaf"]["scaf"].items()},
                     {name: np.asarray(stats[name]["values"], dtype=np.float64) for name in WASSERSTEIN},
                     f"molsets {split}_stats.npz")


def cached_reference(key: str, make: Callable[[], Reference]) -> Reference:
    """A :class:`Reference` computed once per ``key`` and cached under ``$GENLAB_CACHE/molecules``."""
    folder = cache_folder("reference:" + key)
    if not (folder / "reference.npz").is_file():
        make().save(folder)
    return Reference.load(folder)


# -- GuacaMol's KL score ---------------------------------------------------------------------------

def _kl_record(smiles: str) -> tuple[list[float], np.ndarray] | None:
    """GuacaMol's nine descriptors and the packed ECFP4 (4,096 bits) of one SMILES (None when invalid)."""
    m = mol(smiles)
    if m is None:
        return None
    descriptors = require("rdkit.Chem.Descriptors", "molecules")
    return [getattr(descriptors, d)(m) for d in KL_DESCRIPTORS], np.packbits(morgan_fps([m], bits=4096)[0])


def kl_descriptors(canonical: Sequence[str], jobs: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """GuacaMol's nine descriptors ``(N, 9)`` and each molecule's nearest-neighbour similarity in the set
    (ECFP4, 4,096 bits, itself excluded) ``(N,)``; non-finite descriptors count 0 as in GuacaMol."""
    recs = [r for r in map_molecules(_kl_record, list(canonical), jobs) if r is not None]
    d = np.array([r[0] for r in recs], dtype=np.float64).reshape(len(recs), len(KL_DESCRIPTORS))
    d[~np.isfinite(d)] = 0
    fps = np.stack([r[1] for r in recs]) if recs else np.zeros((0, 512), dtype=np.uint8)
    nn = np.zeros(len(recs))
    for j in range(0, len(recs), 4096):
        g = _bits(fps, j, j + 4096, 4096)
        best = torch.zeros(len(g), dtype=torch.float64)
        for i in range(0, len(recs), 4096):
            r = _bits(fps, i, i + 4096, 4096)
            both = r @ g.T
            sim = torch.nan_to_num(both / (r.sum(1, keepdim=True) + g.sum(1)[None] - both), nan=1.0)
            lo, hi = max(i, j), min(i + len(r), j + len(g))
            if lo < hi:  # the diagonal: a molecule is not its own neighbour
                k = torch.arange(lo, hi)
                sim[k - i, k - j] = 0.0
            best = torch.maximum(best, sim.max(0).values.double())
        nn[j : j + len(g)] = best.numpy()
    return d, nn


def _entropy(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def _kde(data: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gaussian KDE with Scott's bandwidth (``scipy.stats.gaussian_kde`` in 1-D) evaluated at ``x``."""
    var = max(float(np.var(data, ddof=1)) if len(data) > 1 else 0.0, 1e-12) * len(data) ** (-2 / 5)
    out = np.zeros(len(x))
    for i in range(0, len(data), 2048):
        z = (x[:, None] - data[None, i : i + 2048]) ** 2 / var
        out += np.exp(-0.5 * z).sum(1)
    return out / (len(data) * math.sqrt(2 * math.pi * var))


def continuous_kl(base: np.ndarray, sampled: np.ndarray) -> float:
    """KL(P ‖ Q) of Gaussian KDEs of two samples on 1,000 points spanning both (GuacaMol's ``continuous_kldiv``)."""
    both = np.concatenate([base, sampled])
    x = np.linspace(both.min(), both.max(), 1000)
    return _entropy(_kde(base, x) + 1e-10, _kde(sampled, x) + 1e-10)


def discrete_kl(base: np.ndarray, sampled: np.ndarray) -> float:
    """KL(P ‖ Q) of 10-bin histograms on the bins of ``base`` (GuacaMol's ``discrete_kldiv``)."""
    p, bins = np.histogram(base, bins=10, density=True)
    q, _ = np.histogram(sampled, bins=bins, density=True)
    return _entropy(p + 1e-10, q + 1e-10)


def kl_score(base: tuple[np.ndarray, np.ndarray], sampled: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """GuacaMol's KL-divergence score of sampled molecules against a training sample, from
    :func:`kl_descriptors` of each → ``{"KL": score, "KL_divergences": {descriptor: KL}}``."""
    (db, sb), (ds, ss) = base, sampled
    kls = {name: (continuous_kl if i < 4 else discrete_kl)(db[:, i], ds[:, i])
           for i, name in enumerate(KL_DESCRIPTORS)}
    kls["internal_similarity"] = continuous_kl(sb, ss)
    return {"KL": float(np.mean([math.exp(-v) for v in kls.values()])), "KL_divergences": kls}


def kl_set(canonical: Sequence[str]) -> list[str]:
    """The distinct canonical SMILES without stereochemistry that GuacaMol scores."""
    Chem = chem()
    seen: dict[str, None] = {}
    for s in canonical:
        m = mol(s)
        if m is not None:
            seen.setdefault(Chem.MolToSmiles(m, isomericSmiles=False), None)
    return list(seen)


# -- the whole set ---------------------------------------------------------------------------------

@dataclass
class Record:
    """What the MOSES metrics need of one valid generated molecule, computed in a worker process.

    Arguments:
        canonical: its canonical SMILES (the one generated SMILES parsed, written canonically, parsed and written
            again, exactly as MOSES scores: ``remove_invalid`` then each metric's own parsing).
        fp: its Morgan fingerprint (radius 2, 1,024 bits), packed.
        fragments: its BRICS fragments; scaffold: its Bemis–Murcko scaffold (None below two rings).
        passes: whether it passes the filters; props: ``logP``, ``SA``, ``QED``, ``weight``.
        flat: its canonical SMILES without stereochemistry (GuacaMol's KL set).
    """

    canonical: str
    fp: np.ndarray
    fragments: list[str]
    scaffold: str | None
    passes: bool
    props: tuple[float, ...]
    flat: str


def molecule_record(smiles: str) -> Record | None:
    """The :class:`Record` of a generated SMILES, or None when it is invalid."""
    m = mol(smiles)
    if m is None:
        return None
    Chem = chem()
    m = mol(Chem.MolToSmiles(m))
    if m is None:
        return None
    return Record(Chem.MolToSmiles(m), np.packbits(morgan_fps([m])[0]), brics_fragments(m), scaffold(m),
                  passes_filters(m), tuple(moses_property(p, m) for p in WASSERSTEIN),
                  Chem.MolToSmiles(m, isomericSmiles=False))


def moses_metrics(gen: Sequence[str], test: Reference, train: set[str] | frozenset[str], *,
                  test_scaffolds: Reference | None = None, k: Sequence[int] = (1000, 10000),
                  kl_base: tuple[np.ndarray, np.ndarray] | None = None, jobs: int = 0,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every MOSES metric of generated SMILES (plus GuacaMol's KL score when ``kl_base`` is given).

    Arguments:
        gen: the generated SMILES as sampled (invalid ones count against ``valid``).
        test: statistics of the test set (``*/Test`` metrics and the property distances).
        train: canonical training SMILES (``Novelty``).
        test_scaffolds: statistics of the scaffold test set (``*/TestSF`` metrics), if any.
        k: sizes of ``unique@k``.
        kl_base: :func:`kl_descriptors` of a training sample for the KL score.
        jobs: worker processes for the per-molecule RDKit work (0 = every core).
        progress: called with the name of each stage.

    Returns:
        ``metric → value`` under the MOSES names (``valid``, ``unique@1000``, ``FCD/Test``, ``IntDiv``, …), plus
        ``n``, ``n_valid`` and ``seconds`` per stage.
    """
    say = progress or (lambda stage: None)
    seconds: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        seconds[name] = time.perf_counter() - t
        t = time.perf_counter()
        say(name)

    raw = map_molecules(molecule_record, list(gen), jobs)
    recs = [r for r in raw if r is not None]
    out: dict[str, Any] = {"n": len(gen), "valid": len(recs) / max(len(gen), 1), "n_valid": len(recs)}
    canon = [r.canonical for r in recs]
    for kk in k:
        out[f"unique@{kk}"] = fraction_unique(canon, kk)
    out["Novelty"] = novelty(canon, train)
    lap("RDKit per molecule")
    if len(recs) < 2:
        out["note"] = f"{len(recs)} valid molecule(s): too few for the distribution metrics"
        out["seconds"] = seconds
        return out
    mu, sigma = gaussian_stats(chemnet_features(canon))
    refs = {"Test": test, **({"TestSF": test_scaffolds} if test_scaffolds is not None else {})}
    for name, ref in refs.items():
        out[f"FCD/{name}"] = frechet_distance(ref.mu, ref.sigma, mu, sigma)
    lap("FCD")
    fps = np.stack([r.fp for r in recs])
    for name, ref in refs.items():
        out[f"SNN/{name}"] = float(tanimoto_agg(ref.fps, fps, agg="max").mean())
    lap("SNN")
    frag: Counter[str] = Counter()
    for r in recs:
        frag.update(r.fragments)
    scaf = Counter(r.scaffold for r in recs if r.scaffold is not None)
    for name, ref in refs.items():
        out[f"Frag/{name}"] = cosine_similarity(ref.frag, frag)
        out[f"Scaf/{name}"] = cosine_similarity(ref.scaf, scaf)
    out["IntDiv"] = internal_diversity(fps, 1)
    out["IntDiv2"] = internal_diversity(fps, 2)
    out["Filters"] = float(np.mean([r.passes for r in recs]))
    for i, name in enumerate(WASSERSTEIN):
        out[name] = wasserstein(test.props[name], [r.props[i] for r in recs])
    lap("IntDiv, Frag, Scaf, properties")
    if kl_base is not None:
        out.update(kl_score(kl_base, kl_descriptors(list(dict.fromkeys(r.flat for r in recs)), jobs)))
        lap("KL")
    out["seconds"] = seconds
    return out
