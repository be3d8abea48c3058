"""Bias reports: class balance of unconditional samples against the training prior, per-class accuracy of
conditional samples, the demographic-parity difference of a protected column (tables, real vs. synthetic), and
the representation of gendered terms in generated text.

References:
    Lee et al., "Holistic Evaluation of Text-to-Image Models" (HEIM), 2023, arXiv:2311.04287 (bias aspect).
    Liang et al., "Holistic Evaluation of Language Models" (HELM), 2022, arXiv:2211.09110 (demographic
    representation: total variation distance of group-term counts from uniform).
    Dwork et al., "Fairness Through Awareness", 2012, arXiv:1104.3913; Feldman et al., 2015 (demographic parity).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from genlab.errors import ConfigError


def class_balance(predicted: Sequence[int] | np.ndarray, prior: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Predicted-class shares of samples vs. the training prior: total variation, KL and a χ² test.

    Arguments:
        predicted: the class a classifier assigns each sample.
        prior: the training split's class shares (sums to 1).

    Returns:
        shares, prior, ``tv`` (½ Σ |p − q|), ``kl`` (KL(samples ‖ prior), nats), the χ² goodness-of-fit p-value
        (small: the samples' classes do not follow the prior), and the most over- and under-represented class.
    """
    from scipy.stats import chisquare

    q = np.asarray(prior, dtype=np.float64)
    if q.ndim != 1 or len(q) < 2 or abs(q.sum() - 1) > 1e-6 or (q < 0).any():
        raise ConfigError("the class prior must be shares of at least two classes summing to 1")
    pred = np.asarray(predicted, dtype=np.int64)
    counts = np.bincount(pred, minlength=len(q)).astype(np.float64)
    p = counts / counts.sum()
    nz = p > 0
    kl = float((p[nz] * np.log(p[nz] / np.clip(q[nz], 1e-12, None))).sum())
    ratio = p / np.clip(q, 1e-12, None)
    return {"n": int(counts.sum()), "shares": p.tolist(), "prior": q.tolist(), "tv": float(0.5 * np.abs(p - q).sum()),
            "kl": kl, "chi2_p_value": float(chisquare(counts, q * counts.sum()).pvalue),
            "most_over": int(ratio.argmax()), "most_under": int(ratio.argmin()),
            "max_ratio": float(ratio.max()), "min_ratio": float(ratio.min())}


def per_class_accuracy(predicted: Sequence[int] | np.ndarray, requested: Sequence[int] | np.ndarray,
                       num_classes: int, reference: Sequence[float] | None = None) -> dict[str, Any]:
    """Accuracy of conditional samples per requested class, its spread, and the classifier's own per-class test
    accuracy (so a hard class for the classifier is not blamed on the generator)."""
    pred, req = np.asarray(predicted), np.asarray(requested)
    acc = [float((pred[req == c] == c).mean()) if (req == c).any() else float("nan") for c in range(num_classes)]
    valid = [a for a in acc if not math.isnan(a)]
    out: dict[str, Any] = {"per_class": acc, "mean": float(np.mean(valid)), "min": float(min(valid)),
                           "max": float(max(valid)), "gap": float(max(valid) - min(valid)),
                           "worst_class": int(np.nanargmin(acc))}
    if reference is not None:
        out["classifier_per_class"] = [float(r) for r in reference]
        out["relative_to_classifier"] = [a / r if r > 0 else float("nan") for a, r in zip(acc, reference,
                                                                                            strict=True)]
    return out


def demographic_parity(protected: Sequence[Any] | np.ndarray, outcome: Sequence[Any] | np.ndarray,
                       positive: Any = None) -> dict[str, Any]:
    """Demographic-parity difference: the largest gap in ``P(outcome = positive | group)`` between groups.

    Arguments:
        protected: the protected attribute of each row (any hashable values).
        outcome: the outcome of each row (binary; or any values with ``positive`` naming the favourable one).
        positive: the favourable outcome (default: 1/True, or the larger of two values).

    Returns:
        the positive rate per group, the difference (max − min) and the ratio (min / max; the "80 % rule").
    """
    a, y = np.asarray(protected), np.asarray(outcome)
    if len(a) != len(y) or len(a) == 0:
        raise ConfigError("demographic parity needs one protected value and one outcome per row")
    if positive is None:
        values = sorted(set(y.tolist()), key=str)
        positive = True if True in values else 1 if 1 in values else values[-1]
    hit = y == positive
    groups = sorted(set(a.tolist()), key=str)
    if len(groups) < 2:
        raise ConfigError("demographic parity needs at least two groups in the protected column")
    rates = {str(g): float(hit[a == g].mean()) for g in groups}
    hi, lo = max(rates.values()), min(rates.values())
    return {"positive": str(positive), "rates": rates, "difference": hi - lo, "ratio": lo / hi if hi > 0 else 1.0,
            "counts": {str(g): int((a == g).sum()) for g in groups}}


def parity_gap(real: dict[str, Any], synthetic: dict[str, Any]) -> dict[str, Any]:
    """Compare :func:`demographic_parity` of real and synthetic data: does the generator widen the gap?"""
    return {"real": real, "synthetic": synthetic, "difference_real": real["difference"],
            "difference_synthetic": synthetic["difference"],
            "amplification": synthetic["difference"] - real["difference"]}


#: gendered terms (HELM's demographic-representation word lists, abridged)
GENDER_TERMS = {
    "female": ("she", "her", "hers", "herself", "woman", "women", "girl", "girls", "mother", "mothers",
               "daughter", "daughters", "sister", "sisters", "wife", "wives", "lady", "ladies", "queen", "aunt",
               "niece", "madam", "female", "females", "mrs", "ms"),
    "male": ("he", "him", "his", "himself", "man", "men", "boy", "boys", "father", "fathers", "son", "sons",
             "brother", "brothers", "husband", "husbands", "gentleman", "gentlemen", "king", "uncle", "nephew",
             "sir", "male", "males", "mr"),
}
_WORD = re.compile(r"[a-z]+")


def gender_representation(texts: Sequence[str]) -> dict[str, Any]:
    """Counts of female and male terms, their shares and HELM's representation score (TV distance from an even
    split: 0 = balanced, 0.5 = one group only)."""
    counts = dict.fromkeys(GENDER_TERMS, 0)
    lookup = {w: g for g, words in GENDER_TERMS.items() for w in words}
    for t in texts:
        for w in _WORD.findall(t.lower()):
            if w in lookup:
                counts[lookup[w]] += 1
    total = sum(counts.values())
    shares = {g: c / total if total else float("nan") for g, c in counts.items()}
    score = 0.5 * sum(abs(s - 0.5) for s in shares.values()) if total else float("nan")
    return {"counts": counts, "shares": shares, "representation_tv": score, "terms": total}
