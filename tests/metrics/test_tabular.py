"""Every tabular metric against a reference implementation (scipy, scikit-learn) or hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas", reason="needs the tabular extra")

from genlab.data.tables import ColumnInfo, infer_columns  # noqa: E402
from genlab.metrics import tabular as mt  # noqa: E402


def test_ks_matches_scipy():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.3, 1.2, size=200)
    b[:5] = np.nan  # missing values are left out
    assert mt.ks_statistic(a, b) == pytest.approx(ks_2samp(a, b[~np.isnan(b)]).statistic, abs=1e-12)
    ints = rng.integers(0, 4, 100).astype(float)  # ties
    assert mt.ks_statistic(ints, ints[::-1].copy()) == 0.0
    assert mt.ks_statistic(np.array([1.0]), np.array([np.nan])) == 1.0


def test_tv_and_contingency_by_hand():
    # p = (0.5, 0.5, 0), q = (0.25, 0.25, 0.5): TV = ½ (0.25 + 0.25 + 0.5) = 0.5
    assert mt.tv_distance(np.array([0, 1, 0, 1]), np.array([0, 1, 2, 2]), 3) == pytest.approx(0.5)
    assert mt.tv_distance(np.array([0, -1, 1]), np.array([1, 0]), 2) == 0.0  # -1 (missing) is left out
    # joint of (a1, a2): {(0,0): .5, (1,1): .5}; of (b1, b2): {(0,1): .5, (1,1): .5} → TV = ½ (.5 + .5) = .5
    a1, a2 = np.array([0, 1]), np.array([0, 1])
    b1, b2 = np.array([0, 1]), np.array([1, 1])
    assert mt.contingency_tv(a1, a2, b1, b2, 2, 2) == pytest.approx(0.5)


def test_pearson_cramers_v_auc_f1_r2_match_references():
    from scipy.stats.contingency import association
    from sklearn.metrics import f1_score, r2_score, roc_auc_score

    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = 0.6 * x + rng.normal(size=200)
    assert mt.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    a, b = rng.integers(0, 3, 500), rng.integers(0, 4, 500)
    b[a == 0] = 0
    table = np.bincount(a * 4 + b, minlength=12).reshape(3, 4)
    assert mt.cramers_v(a, b, 3, 4) == pytest.approx(association(table, method="cramer"))
    labels, scores = rng.integers(0, 2, 300), rng.normal(size=300)
    scores[:20] = 0.5  # ties
    assert mt.roc_auc(labels, scores + labels * 0.5) == pytest.approx(roc_auc_score(labels, scores + labels * 0.5))
    t, p = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    assert mt.macro_f1(t, p) == pytest.approx(f1_score(t, p, average="macro"))
    yt, yp = rng.normal(size=50), rng.normal(size=50)
    assert mt.r2(yt, yp) == pytest.approx(r2_score(yt, yp))


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) + shift
    return pd.DataFrame({"x": x, "y": 2 * x + rng.normal(size=n), "c": np.where(x > shift, "hi", "lo")})


def test_quality_is_one_on_itself_and_falls_with_a_shift():
    real = _frame(400, 0)
    cols = infer_columns(real)
    q = mt.quality(real, real, cols)
    assert q["quality"] == pytest.approx(1.0) and set(q["pair_trends"]) == {"x|y", "x|c", "y|c"}
    shifted = mt.quality(real, _frame(400, 1, shift=1.0), cols)
    assert shifted["quality"] < 0.9 and shifted["column_shapes"]["x"] < 0.7
    # correlation similarity by hand: 1 - |ρ_r - ρ_s| / 2 with ρ_s = 0 for independent columns
    indep = real.copy()
    indep["y"] = np.random.default_rng(5).permutation(indep["y"].to_numpy())
    rho = mt.pearson(real["x"].to_numpy(), real["y"].to_numpy())
    rho_s = mt.pearson(indep["x"].to_numpy(), indep["y"].to_numpy())
    assert mt.quality(real, indep, cols)["pair_trends"]["x|y"] == pytest.approx(1 - abs(rho - rho_s) / 2)


def test_detection_utility_privacy_separate_good_from_bad():
    train, test = _frame(300, 0), _frame(150, 1)
    cols = infer_columns(train)
    copy = train.copy()
    bad = _frame(300, 2, shift=3.0)
    d_bad = mt.detection(train, bad, cols, folds=3)
    d_same = mt.detection(train, _frame(300, 3), cols, folds=3)
    assert d_bad["auc"] > 0.95 and d_same["auc"] < 0.7 and d_bad["score"] < d_same["score"]
    u = mt.utility(train, test, _frame(300, 4), cols, target="c")
    assert u["metric"] == "macro_f1" and u["real"] > 0.8 and abs(u["gap"]) < 0.2
    p_copy = mt.privacy(train, test, copy, cols, max_rows=300)  # 150 train vs 150 holdout rows, all 300 copies
    p_new = mt.privacy(train, test, _frame(300, 5), cols, max_rows=300)
    assert p_copy["exact_copies"] > 0.4 and p_copy["closer_to_train"] > 0.65 and p_copy["mia_auc"] > 0.9
    assert 0.3 < p_new["closer_to_train"] < 0.7 and abs(p_new["mia_auc"] - 0.5) < 0.12 and p_new["exact_copies"] == 0


def test_adherence_and_missing_rates_by_hand():
    real = pd.DataFrame({"n": [0.0, 1.0, 2.0, np.nan], "c": ["a", "b", "a", "b"]})
    synth = pd.DataFrame({"n": [0.5, 3.0, np.nan, np.nan], "c": ["a", "z", "b", None]})
    cols = [ColumnInfo("n", "continuous", "float64", lo=0, hi=2, has_missing=True),
            ColumnInfo("c", "categorical", "str", categories=["a", "b"])]
    a = mt.adherence(real, synth, cols)
    assert a["boundary"] == pytest.approx(0.5)  # 0.5 in [0, 2], 3.0 outside
    assert a["category"] == pytest.approx(2 / 3)  # "z" is not a real category; missing is left out
    m = mt.missing_rates(real, synth)
    assert m["columns"]["n"]["error_points"] == pytest.approx(25.0) and m["max_error_points"] == pytest.approx(25.0)
