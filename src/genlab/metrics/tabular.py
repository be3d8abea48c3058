"""Metrics of synthetic tables against real ones: fidelity, detection, machine-learning utility, privacy,
adherence and missingness — our own implementations of the formulas the field uses (SDMetrics' definitions).

Fidelity (SDMetrics' quality report): **column shapes** — ``1 - KS`` (two-sample Kolmogorov–Smirnov statistic) for
numbers and datetimes, ``1 - TV`` (total variation ``½ Σ |p - q|``) for categories; **column-pair trends** — for two
numbers ``1 - |ρ_r - ρ_s| / 2`` (Pearson), otherwise the contingency similarity ``1 - ½ Σ_{a,b} |p_r(a,b) -
p_s(a,b)|`` with numbers cut into 10 equal-width bins on the real range; the **quality score** is the mean of the
two property means. Missing values are left out of these (their rates are scored on their own).

Detection: a classifier learns to tell real from synthetic rows (as many of each), scored by its cross-validated
ROC AUC on held-out folds (0.5: indistinguishable, 1: always told apart) and SDMetrics' score ``1 - max(0, 2·AUC - 1)``.

Utility: a gradient-boosted model trained on the synthetic rows and one trained on the real training split predict
the target on the real test split (macro-F1 for a categorical target, R² for a number).

Privacy, on a Gower-like encoding (numbers scaled to [0, 1] by the real range, categories one-hot / √2, missing as
its own indicator): **DCR** — distance of each synthetic row to its closest training row, against its closest row of
an equally large holdout (the test split); the share of synthetic rows closer to training than holdout rows is ½
for a model that does not copy; **NNDR** — nearest / second-nearest training distance; **membership inference AUC**
— an attacker scores real rows by their distance to the closest synthetic row (members: training rows; non-members:
holdout rows); 0.5 means no leakage.

References:
    SDMetrics (DataCebo), "Single Table Metrics", docs.sdv.dev/sdmetrics (KSComplement, TVComplement,
    CorrelationSimilarity, ContingencySimilarity, LogisticDetection, BoundaryAdherence, CategoryAdherence,
    DCRBaselineProtection).
    Zhao et al., "CTAB-GAN", 2021, arXiv:2102.08369 (DCR and NNDR).
    Shokri et al., "Membership Inference Attacks against Machine Learning Models", 2017, arXiv:1610.05820.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genlab.data.tables import NUMERIC_KINDS, ColumnInfo, column_values

if TYPE_CHECKING:
    import pandas as pd


# -- single columns and pairs --------------------------------------------------------------------------

def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic ``sup_x |F_a(x) - F_b(x)|`` (NaNs dropped; 1.0 if a side is empty)."""
    a, b = np.sort(a[~np.isnan(a)]), np.sort(b[~np.isnan(b)])
    if len(a) == 0 or len(b) == 0:
        return 1.0
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def tv_distance(a: np.ndarray, b: np.ndarray, levels: int) -> float:
    """Total variation ``½ Σ_k |p_a(k) - p_b(k)|`` between the level frequencies of codes (negative = missing, left
    out; 1.0 if a side is empty)."""
    a, b = a[a >= 0], b[b >= 0]
    if len(a) == 0 or len(b) == 0:
        return 1.0
    pa = np.bincount(a, minlength=levels) / len(a)
    pb = np.bincount(b, minlength=levels) / len(b)
    return float(0.5 * np.abs(pa - pb).sum())


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over rows where both are present (0 for a constant or too short column)."""
    ok = ~np.isnan(x) & ~np.isnan(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def contingency_tv(a1: np.ndarray, a2: np.ndarray, b1: np.ndarray, b2: np.ndarray, l1: int, l2: int) -> float:
    """Total variation between the joint frequencies of two code columns (rows with a negative code dropped)."""
    def joint(u: np.ndarray, v: np.ndarray) -> np.ndarray | None:
        ok = (u >= 0) & (v >= 0)
        if not ok.any():
            return None
        return np.bincount(u[ok] * l2 + v[ok], minlength=l1 * l2) / ok.sum()

    pa, pb = joint(a1, a2), joint(b1, b2)
    if pa is None or pb is None:
        return 1.0
    return float(0.5 * np.abs(pa - pb).sum())


def discretize(real: np.ndarray, other: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Bin codes (``-1`` for missing) of two number columns on ``bins`` equal-width bins of the real range."""
    r = real[~np.isnan(real)]
    lo, hi = (float(r.min()), float(r.max())) if len(r) else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)

    def codes(v: np.ndarray) -> np.ndarray:
        c = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, bins - 1)
        return np.where(np.isnan(v), -1, c).astype(np.int64)

    return codes(real), codes(other)


# -- the whole table ------------------------------------------------------------------------------------

def _columns(df: pd.DataFrame, columns: Sequence[ColumnInfo]) -> dict[str, np.ndarray]:
    return {c.name: column_values(df[c.name], c) for c in columns}


def quality(real: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[ColumnInfo]) -> dict[str, Any]:
    """SDMetrics-style quality: per-column shape scores, per-pair trend scores and their means.

    Returns:
        ``{"quality", "shapes", "trends", "column_shapes": {name: score}, "pair_trends": {"a|b": score}}``.
    """
    rv, sv = _columns(real, columns), _columns(synth, columns)
    shapes: dict[str, float] = {}
    for c in columns:
        if c.kind in NUMERIC_KINDS:
            shapes[c.name] = 1.0 - ks_statistic(rv[c.name], sv[c.name])
        else:
            shapes[c.name] = 1.0 - tv_distance(rv[c.name], sv[c.name], len(c.categories))
    pairs: dict[str, float] = {}
    for i, a in enumerate(columns):
        for b in columns[i + 1 :]:
            if a.kind in NUMERIC_KINDS and b.kind in NUMERIC_KINDS:
                ra, rb = rv[a.name], rv[b.name]
                pairs[f"{a.name}|{b.name}"] = 1.0 - abs(pearson(ra, rb) - pearson(sv[a.name], sv[b.name])) / 2
                continue
            codes = []
            for c in (a, b):
                if c.kind in NUMERIC_KINDS:
                    codes.append((*discretize(rv[c.name], sv[c.name]), 10))
                else:
                    codes.append((rv[c.name], sv[c.name], len(c.categories)))
            (r1, s1, l1), (r2, s2, l2) = codes
            pairs[f"{a.name}|{b.name}"] = 1.0 - contingency_tv(r1, r2, s1, s2, l1, l2)
    shape_mean = float(np.mean(list(shapes.values())))
    trend_mean = float(np.mean(list(pairs.values()))) if pairs else shape_mean
    return {"quality": (shape_mean + trend_mean) / 2, "shapes": shape_mean, "trends": trend_mean,
            "column_shapes": shapes, "pair_trends": pairs}


def association_matrix(df: pd.DataFrame, columns: Sequence[ColumnInfo], reference: pd.DataFrame | None = None
                       ) -> np.ndarray:
    """Pairwise association ``(C, C)`` in [-1, 1]: Pearson between numbers, Cramér's V otherwise (numbers cut
    into 10 bins on ``reference``'s range) — what the correlation-difference heat map shows."""
    ref = _columns(reference if reference is not None else df, columns)
    vals = _columns(df, columns)
    k = len(columns)
    m = np.eye(k)
    for i, a in enumerate(columns):
        for j in range(i + 1, k):
            b = columns[j]
            if a.kind in NUMERIC_KINDS and b.kind in NUMERIC_KINDS:
                v = pearson(vals[a.name], vals[b.name])
            else:
                cs = []
                for c in (a, b):
                    if c.kind in NUMERIC_KINDS:
                        cs.append((discretize(ref[c.name], vals[c.name])[1], 10))
                    else:
                        cs.append((vals[c.name], len(c.categories)))
                v = cramers_v(cs[0][0], cs[1][0], cs[0][1], cs[1][1])
            m[i, j] = m[j, i] = v
    return m


def cramers_v(a: np.ndarray, b: np.ndarray, la: int, lb: int) -> float:
    """Cramér's V ``sqrt(χ² / (n · (min(r, c) - 1)))`` of two code columns (rows with a negative code dropped)."""
    ok = (a >= 0) & (b >= 0)
    a, b = a[ok], b[ok]
    if len(a) < 2:
        return 0.0
    table = np.bincount(a * lb + b, minlength=la * lb).reshape(la, lb).astype(np.float64)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    if min(table.shape) < 2:
        return 0.0
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return math.sqrt(chi2 / (n * (min(table.shape) - 1)))


def features(df: pd.DataFrame, columns: Sequence[ColumnInfo], reference: pd.DataFrame) -> np.ndarray:
    """Gower-like numeric features ``(N, F)``: numbers scaled to [0, 1] by ``reference``'s range (missing → 0 plus a
    1 in its indicator), categories one-hot scaled by 1/√2 so that two different categories are 1 apart."""
    parts = []
    ref = _columns(reference, columns)
    vals = _columns(df, columns)
    for c in columns:
        v = vals[c.name]
        if c.kind in NUMERIC_KINDS:
            r = ref[c.name][~np.isnan(ref[c.name])]
            lo, hi = (float(r.min()), float(r.max())) if len(r) else (0.0, 1.0)
            scaled = (v - lo) / (hi - lo if hi > lo else 1.0)
            miss = np.isnan(v)
            parts.append(np.where(miss, 0.0, scaled)[:, None])
            if c.has_missing:
                parts.append(miss[:, None].astype(np.float64))
        else:
            k = len(c.categories) + 1
            onehot = np.zeros((len(v), k))
            onehot[np.arange(len(v)), np.where(v < 0, k - 1, v)] = 1 / math.sqrt(2)
            parts.append(onehot)
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(df), 0))


def nearest(query: np.ndarray, ref: np.ndarray, k: int = 1) -> np.ndarray:
    """Euclidean distances ``(N, k)`` from each query row to its ``k`` nearest ``ref`` rows (chunked, exact)."""
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float64))
    r = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float64))
    out = []
    for lo in range(0, len(q), 1024):
        d = torch.cdist(q[lo : lo + 1024], r)
        out.append(torch.topk(d, k, dim=1, largest=False).values)
    return torch.cat(out).numpy()


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann–Whitney U) formula, ties counted half."""
    from scipy.stats import rankdata

    labels = labels.astype(bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def privacy(train: pd.DataFrame, holdout: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[ColumnInfo],
            max_rows: int = 2000, seed: int = 0) -> dict[str, Any]:
    """DCR against an equally large holdout, NNDR and the distance-based membership-inference AUC."""
    rng = np.random.default_rng(seed)
    m = min(len(train), len(holdout), max_rows)
    tr = train.iloc[np.sort(rng.choice(len(train), m, replace=False))]
    ho = holdout.iloc[np.sort(rng.choice(len(holdout), m, replace=False))]
    sy = synth.iloc[np.sort(rng.choice(len(synth), min(len(synth), max_rows), replace=False))]
    f_tr, f_ho, f_sy = (features(d, columns, train) for d in (tr, ho, sy))
    d_tr = nearest(f_sy, f_tr, k=min(2, m))
    d_ho = nearest(f_sy, f_ho, k=1)[:, 0]
    closer = float(np.mean((d_tr[:, 0] < d_ho) + 0.5 * (d_tr[:, 0] == d_ho)))
    nndr = d_tr[:, 0] / np.maximum(d_tr[:, -1], 1e-12) if d_tr.shape[1] > 1 else np.ones(len(d_tr))
    base = nearest(f_ho, f_tr, k=min(2, m))
    base_nndr = base[:, 0] / np.maximum(base[:, -1], 1e-12) if base.shape[1] > 1 else np.ones(len(base))
    member = nearest(f_tr, f_sy, k=1)[:, 0]
    outsider = nearest(f_ho, f_sy, k=1)[:, 0]
    labels = np.concatenate([np.ones(m), np.zeros(m)])
    mia = roc_auc(labels, -np.concatenate([member, outsider]))
    return {"dcr_train": float(np.median(d_tr[:, 0])), "dcr_holdout": float(np.median(d_ho)),
            "dcr_real_holdout": float(np.median(base[:, 0])), "closer_to_train": closer,
            "exact_copies": float(np.mean(d_tr[:, 0] < 1e-9)), "nndr": float(np.median(nndr)),
            "nndr_real_holdout": float(np.median(base_nndr)), "mia_auc": mia, "rows": m}


def _model_matrix(df: pd.DataFrame, columns: Sequence[ColumnInfo]) -> tuple[np.ndarray, list[bool]]:
    """Features for gradient boosting: numbers as they are (NaN kept), categories as codes (NaN for missing)."""
    vals = _columns(df, columns)
    cols, cat = [], []
    for c in columns:
        v = vals[c.name].astype(np.float64)
        if c.kind not in NUMERIC_KINDS:
            v = np.where(v < 0, np.nan, v)
        cols.append(v)
        cat.append(c.kind not in NUMERIC_KINDS)
    return (np.stack(cols, 1) if cols else np.zeros((len(df), 0))), cat


def _gbdt(classify: bool, cat: list[bool], seed: int, max_iter: int = 100) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    mask = np.asarray(cat, dtype=bool) if any(cat) else None
    cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    return cls(max_iter=max_iter, categorical_features=mask, random_state=seed, early_stopping=False)


def detection(real: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[ColumnInfo], *, classifier: str = "gbdt",
              folds: int = 3, seed: int = 0) -> dict[str, Any]:
    """Classifier two-sample test: cross-validated ROC AUC of telling real from synthetic rows (balanced)."""
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    m = min(len(real), len(synth))
    r = real.iloc[np.sort(rng.choice(len(real), m, replace=False))]
    s = synth.iloc[np.sort(rng.choice(len(synth), m, replace=False))]
    import pandas as pd

    both = pd.concat([r, s], ignore_index=True)
    labels = np.concatenate([np.ones(m), np.zeros(m)]).astype(int)
    folds = max(2, min(folds, m))
    if classifier == "logistic":
        from sklearn.linear_model import LogisticRegression

        x = features(both, columns, real)
    else:
        x, cat = _model_matrix(both, columns)
    aucs = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, labels):
        clf = LogisticRegression(max_iter=500) if classifier == "logistic" else _gbdt(True, cat, seed)
        clf.fit(x[tr], labels[tr])
        aucs.append(roc_auc(labels[te], clf.predict_proba(x[te])[:, 1]))
    auc = float(np.mean(aucs))
    return {"auc": auc, "auc_std": float(np.std(aucs)), "score": 1.0 - max(0.0, 2 * auc - 1), "folds": folds,
            "classifier": classifier, "rows_each": m}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-averaged F1 over the classes present in ``y_true`` or ``y_pred``."""
    classes = np.union1d(y_true, y_pred)
    f1 = []
    for c in classes:
        tp = float(np.sum((y_pred == c) & (y_true == c)))
        fp = float(np.sum((y_pred == c) & (y_true != c)))
        fn = float(np.sum((y_pred != c) & (y_true == c)))
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``."""
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    return 1.0 - float(((y_true - y_pred) ** 2).sum()) / (ss_tot if ss_tot > 0 else 1.0)


def utility(train: pd.DataFrame, test: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[ColumnInfo],
            target: str, seed: int = 0) -> dict[str, Any]:
    """Train on synthetic, test on real vs train on real: macro-F1 (categorical target) or R² (number)."""
    t = next(c for c in columns if c.name == target)
    feats = [c for c in columns if c.name != target]
    classify = t.kind not in NUMERIC_KINDS
    y_test = column_values(test[target], t).astype(np.float64)
    keep = ~np.isnan(y_test) & (y_test >= 0 if classify else True)
    x_test, cat = _model_matrix(test, feats)
    scores = {}
    for name, df in (("real", train), ("synthetic", synth)):
        y = column_values(df[target], t).astype(np.float64)
        ok = ~np.isnan(y) & (y >= 0 if classify else True)
        x, _ = _model_matrix(df, feats)
        if ok.sum() < 2 or (classify and len(np.unique(y[ok])) < 2):
            scores[name] = 0.0 if classify else float("nan")
            continue
        model = _gbdt(classify, cat, seed, 200)
        model.fit(x[ok], y[ok])
        pred = model.predict(x_test[keep])
        scores[name] = macro_f1(y_test[keep], pred) if classify else r2(y_test[keep], pred)
    return {"metric": "macro_f1" if classify else "r2", "target": target, "real": scores["real"],
            "synthetic": scores["synthetic"], "gap": scores["real"] - scores["synthetic"]}


def adherence(real: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[ColumnInfo]) -> dict[str, Any]:
    """Share of synthetic numbers inside the real ``[min, max]`` and of synthetic categories in the real set
    (missing values left out), averaged over columns."""
    rv, sv = _columns(real, columns), _columns(synth, columns)
    bounds, cats = [], []
    for c in columns:
        s = sv[c.name]
        if c.kind in NUMERIC_KINDS:
            r = rv[c.name][~np.isnan(rv[c.name])]
            s = s[~np.isnan(s)]
            if len(s):
                bounds.append(float(np.mean((s >= r.min()) & (s <= r.max()))))
        else:
            seen = np.unique(rv[c.name][rv[c.name] >= 0])
            raw = synth[c.name]
            present = raw.notna().to_numpy()
            codes = s[present]
            if len(codes):
                cats.append(float(np.mean(np.isin(codes, seen))))
    return {"boundary": float(np.mean(bounds)) if bounds else 1.0,
            "category": float(np.mean(cats)) if cats else 1.0}


def missing_rates(real: pd.DataFrame, synth: pd.DataFrame) -> dict[str, Any]:
    """Per-column missing rate of real and synthetic rows and their absolute difference in percentage points."""
    per = {}
    for name in real.columns:
        r, s = float(real[name].isna().mean()), float(synth[name].isna().mean())
        per[name] = {"real": r, "synthetic": s, "error_points": 100 * abs(r - s)}
    return {"columns": per, "max_error_points": max((v["error_points"] for v in per.values()), default=0.0)}


def table_report(train: pd.DataFrame, test: pd.DataFrame, synth: pd.DataFrame, columns: Sequence[ColumnInfo], *,
                 target: str | None, classifier: str = "gbdt", folds: int = 3, privacy_rows: int = 2000,
                 seed: int = 0) -> dict[str, Any]:
    """Every metric of a synthetic table: fidelity against the training split, detection, utility on the test
    split, privacy against the test split as holdout, adherence and missing rates."""
    q = quality(train, synth, columns)
    out: dict[str, Any] = {**q, "n_synthetic": len(synth)}
    out["detection"] = detection(train, synth, columns, classifier=classifier, folds=folds, seed=seed)
    out["utility"] = (utility(train, test, synth, columns, target, seed) if target is not None else
                      {"note": "no target column (give --target)"})
    out["privacy"] = privacy(train, test, synth, columns, privacy_rows, seed)
    out["adherence"] = adherence(train, synth, columns)
    out["missing"] = missing_rates(train, synth)
    return out
