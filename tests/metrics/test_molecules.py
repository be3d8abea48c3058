"""The MOSES metric set and GuacaMol's KL score: against molsets' own numbers (a fixture the parity benchmark wrote),
against scipy and fcd_torch where they import, and against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit", reason="the molecules extra is not installed")

from genlab.data.molecules import canonical, mol
from genlab.metrics import molecules as M
from genlab.metrics.chemnet import VOCAB, chemnet_features, symbol_ids

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "moses-parity.json"
SMILES = ["CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1", "COc1ccc(-c2cc(=O)c3c(O)c(OC)c(OC)cc3o2)cc1O", "C[Si](C)(C)Br",
          "CCO.CC", "O=[N+]([O-])c1ccccc1"]


def _chemnet_available() -> None:
    from genlab.errors import ExtraMissing
    from genlab.metrics.chemnet import weights_path

    try:
        weights_path()
    except ExtraMissing as e:
        pytest.skip(str(e))


def _molsets_available() -> None:
    from genlab.data.molecules import molsets_file
    from genlab.errors import ExtraMissing

    try:
        molsets_file("moses/metrics/mcf.csv")
    except ExtraMissing as e:
        pytest.skip(str(e))


def test_every_metric_matches_molsets_on_the_recorded_fixture():
    """molsets' get_all_metrics values, recorded by benchmarks/molecules_parity.py --fixture in its own venv."""
    _chemnet_available()
    _molsets_available()
    if not FIXTURE.is_file():
        pytest.skip("run benchmarks/molecules_parity.py --fixture to record the molsets numbers")
    fx = json.loads(FIXTURE.read_text())
    data = fx["inputs"]
    got = M.moses_metrics(data["gen"], M.reference(data["test"]), frozenset(data["train"]),
                          test_scaffolds=M.reference(data["test_scaffolds"]))
    assert set(fx["molsets"]) <= set(got)
    for key, want in fx["molsets"].items():  # FCD of 44 molecules in 512 dimensions: sqrtm vs eigh, ~2e-7 relative
        assert got[key] == pytest.approx(want, rel=1e-6, abs=1e-6), key


def test_chemnet_symbols_and_features():
    assert [VOCAB[i] for i in symbol_ids("CCl.Br")] == ["C", "Cl", "."]  # cut at the first fragment
    assert [VOCAB[i] for i in symbol_ids("[Si]c1Br")] == ["[", "Si", "]", "c", "1", "Br", "."]
    # two letters only before r, i, l: "Na" is N then an unknown "a" (X)
    assert [VOCAB[i] for i in symbol_ids("[Na+]")] == ["[", "N", "X", "+", "]", "."]
    assert len(symbol_ids("C" * 500)) == 350
    _chemnet_available()
    feats = chemnet_features(SMILES)
    assert feats.shape == (5, 512) and np.isfinite(feats).all()
    try:
        import fcd_torch
    except Exception:  # pragma: no cover - fcd_torch's own imports may not work everywhere
        return
    ref = fcd_torch.FCD(canonize=False).get_predictions(SMILES)
    np.testing.assert_allclose(feats, ref, atol=1e-6)


def test_set_metrics_by_hand():
    assert M.fraction_valid(["CCO", "C1CC", "", "c1ccccc1"]) == 0.5
    assert M.fraction_unique(["A", "A", "B", "C"], 2) == 0.5 and M.fraction_unique(["A", "A", "B"], 10) == 2 / 3
    assert M.novelty(["A", "A", "B", "C"], frozenset({"B"})) == 2 / 3
    assert M.cosine_similarity({"a": 1, "b": 1}, {"a": 1}) == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(M.cosine_similarity({}, {"a": 1}))
    assert M.wasserstein([0.0, 1.0], [0.0, 2.0]) == pytest.approx(0.5)
    assert M.wasserstein([3.0], [1.0]) == pytest.approx(2.0)


def test_wasserstein_and_kl_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    u, v = rng.normal(0, 1, 300), rng.normal(0.5, 2, 200)
    assert M.wasserstein(u, v) == pytest.approx(stats.wasserstein_distance(u, v), abs=1e-12)
    x = np.linspace(min(u.min(), v.min()), max(u.max(), v.max()), 1000)
    want = stats.entropy(stats.gaussian_kde(u)(x) + 1e-10, stats.gaussian_kde(v)(x) + 1e-10)
    assert M.continuous_kl(u, v) == pytest.approx(want, rel=1e-9)
    a, b = rng.integers(0, 6, 300).astype(float), rng.integers(1, 8, 200).astype(float)
    p, bins = np.histogram(a, bins=10, density=True)
    q, _ = np.histogram(b, bins=bins, density=True)
    assert M.discrete_kl(a, b) == pytest.approx(stats.entropy(p + 1e-10, q + 1e-10), rel=1e-9)


def test_tanimoto_snn_and_internal_diversity_by_hand():
    a = np.packbits(np.array([[1, 1, 0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0, 0, 0], [0] * 8], dtype=np.uint8), axis=1)
    # T(a0, a1) = 1/3; an empty fingerprint against an empty one counts 1, against a non-empty one 0
    assert M.tanimoto_agg(a[:2], a[1:2], bits=8).tolist() == pytest.approx([1.0])
    assert M.tanimoto_agg(a[:1], a[1:2], bits=8).tolist() == pytest.approx([1 / 3])
    assert M.tanimoto_agg(a, a[2:], bits=8).tolist() == pytest.approx([1.0])
    sims = np.array([[1, 1 / 3], [1 / 3, 1]])
    fps = np.packbits(np.pad(np.unpackbits(a[:2], axis=1), ((0, 0), (0, 1016))), axis=1)
    assert M.internal_diversity(fps, 1) == pytest.approx(1 - sims.mean())
    assert M.internal_diversity(fps, 2) == pytest.approx(1 - np.sqrt((sims**2).mean(0)).mean())


def test_filters_scaffolds_fragments_properties():
    _molsets_available()
    assert M.passes_filters(mol("CC(=O)Nc1ccc(O)cc1"))
    assert not M.passes_filters(mol("CC[N+](C)(C)C"))  # charged
    assert not M.passes_filters(mol("CC[Si](C)C"))  # atom outside C, N, S, O, F, Cl, Br, H
    assert not M.passes_filters(mol("C1CCCCCCC1"))  # ring of 8
    assert not M.passes_filters(mol("CCC=CC#N"))  # MCF1: an acyclic C=C next to a nitrile
    assert M.scaffold(mol("CCc1ccccc1")) is None  # one ring: below MOSES' two
    assert M.scaffold(mol("CCc1ccc(-c2ccncc2)cc1")) == "c1ccc(-c2ccncc2)cc1"
    # ethyl benzoate: BRICS cuts the ester (types 1/3), the ethyl (4) and the aryl–carbonyl bond (6/16)
    assert sorted(M.brics_fragments(mol("CCOC(=O)c1ccccc1"))) == sorted(["[16*]c1ccccc1", "[1*]C([6*])=O",
                                                                          "[3*]O[3*]", "[4*]CC"])
    m = mol("CCO")
    assert M.moses_property("weight", m) == pytest.approx(46.069, abs=1e-3)
    assert M.moses_property("logP", m) == pytest.approx(-0.0014, abs=1e-4)


def test_kl_score_of_a_set_against_itself_is_one_and_drops_for_another():
    more = ["CC(=O)Nc1ccc(O)cc1", "c1ccc2ccccc2c1", "CCN(CC)CC", "OCC(O)CO", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "C1CCNCC1"]
    smiles = [canonical(s) for s in [*SMILES[:2], *more]]
    base = M.kl_descriptors(M.kl_set(smiles))
    same = M.kl_score(base, base)
    assert same["KL"] == pytest.approx(1.0) and len(same["KL_divergences"]) == 10
    other = M.kl_score(base, M.kl_descriptors(M.kl_set(["CCCCCCCCCC", "CCCCCCCCO", "CCCCCCN", "CCCCCCCCCCCl"])))
    assert other["KL"] < 0.6
