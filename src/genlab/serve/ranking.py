"""Ranking models from pairwise votes: Bradley–Terry maximum likelihood with a position (left-side) term, ties as
half a win, ratings on the Elo scale (400 points per factor 10 in odds, mean 1000), 95 % bootstrap intervals.

Model: the left sample of model i beats the right one of model j with probability
``σ(θ_i − θ_j + h)``; a tie (or "both bad") counts as half a win for each side. ``h`` is the position bias (> 0: the
left side is preferred). Rating ``R_i = 1000 + 400 · (θ_i − mean θ) / ln 10`` (or ``θ_anchor`` pinned at 1000).
Maximised by Newton's method over the distinct (left, right, outcome) cells, so a fit costs the same for 100 or
100,000 votes; the bootstrap resamples votes with replacement as multinomial counts over those cells (the same
distribution as resampling rows) and fits all rounds at once, batched.

References:
    Bradley & Terry, "Rank Analysis of Incomplete Block Designs", 1952.
    Chiang et al., "Chatbot Arena: An Open Platform for Evaluating LLMs by Human Preference", 2024,
    arXiv:2403.04132 (the Elo-scaled Bradley–Terry fit with bootstrap intervals).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genlab.errors import ConfigError

SCALE, ANCHOR = 400.0, 1000.0
#: outcome for the left (a) side of each choice: a win, a loss, or half a win
OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


def _design(left: np.ndarray, right: np.ndarray, m: int, position: bool) -> np.ndarray:
    """Rows ``+1`` at the left model, ``−1`` at the right one (and ``1`` in the position column) → ``(K, m[+1])``."""
    x = np.zeros((len(left), m + int(position)))
    x[np.arange(len(left)), left] += 1.0
    x[np.arange(len(left)), right] -= 1.0
    if position:
        x[:, m] = 1.0
    return x


def fit_cells(x: np.ndarray, y: np.ndarray, counts: np.ndarray, m: int, ridge: float = 1e-3,
              iterations: int = 100, tol: float = 1e-9) -> np.ndarray:
    """Bradley–Terry MLE for a batch of count vectors over the same cells.

    Maximises ``Σ_k c_k [y_k log σ(x_k·w) + (1 − y_k) log(1 − σ(x_k·w))] − ridge/2 · |θ|²`` by Newton's method
    for every row of ``counts`` at once; the tiny ridge on the strengths fixes the free shift (it makes
    ``Σθ = 0``) and keeps a model that never lost finite.

    Arguments:
        x: cell design ``(K, P)`` (:func:`_design`); the first ``m`` columns are strengths.
        y: outcome of each cell for its left side (1, ½ or 0), ``(K,)``.
        counts: votes per cell ``(B, K)``.
        m: number of models.
        ridge: L2 weight on the strengths (natural log-odds units).

    Returns:
        ``(B, P)`` parameters: strengths θ (natural units, summing to 0) then the position term if ``P > m``.
    """
    b, p = counts.shape[0], x.shape[1]
    reg = np.zeros(p)
    reg[:m] = ridge
    reg[m:] = 1e-9
    w = np.zeros((b, p))
    for _ in range(iterations):
        d = w @ x.T  # (B, K)
        prob = 1.0 / (1.0 + np.exp(-d))
        grad = (counts * (y - prob)) @ x - reg * w  # (B, P)
        curv = counts * prob * (1.0 - prob)  # (B, K)
        # minus the Hessian (B, P, P); 1e-10 keeps it invertible along the free shift when ridge = 0
        hess = np.matmul(x.T[None] * curv[:, None, :], x) + np.diag(reg + 1e-10)[None]
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        big = np.abs(step).max(1, keepdims=True)
        step = step * np.minimum(1.0, 5.0 / np.maximum(big, 1e-300))  # no wild first steps under separation
        w = w + step
        if float(np.abs(step).max()) < tol:
            break
    w[:, :m] -= w[:, :m].mean(1, keepdims=True)
    return w


def bradley_terry(left: Sequence[int] | np.ndarray, right: Sequence[int] | np.ndarray,
                  outcome: Sequence[float] | np.ndarray, m: int, *, position: bool = True, ridge: float = 1e-3
                  ) -> tuple[np.ndarray, float]:
    """Bradley–Terry strengths of ``m`` models from votes (``left[i]`` vs ``right[i]``, ``outcome[i]`` for the left
    side: 1 win, ½ tie, 0 loss).

    Returns:
        (θ in natural log-odds units summing to 0, position term h; 0 when ``position`` is False).
    """
    x, y, c = _cells(np.asarray(left), np.asarray(right), np.asarray(outcome, dtype=np.float64), m, position)
    w = fit_cells(x, y, c[None], m, ridge)[0]
    return w[:m], float(w[m]) if position else 0.0


def _cells(left: np.ndarray, right: np.ndarray, outcome: np.ndarray, m: int, position: bool
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (left, right, outcome) cells: their design, outcomes and vote counts."""
    if len(left) == 0:
        raise ConfigError("no votes to rank")
    if (left == right).any():
        raise ConfigError("a vote compares a model with itself")
    code = (left * m + right) * 3 + np.round(outcome * 2).astype(np.int64)
    keys, counts = np.unique(code, return_counts=True)
    pair, out = np.divmod(keys, 3)
    li, ri = np.divmod(pair, m)
    return _design(li, ri, m, position), out / 2.0, counts.astype(np.float64)


def to_elo(theta: np.ndarray, anchor: int | None = None) -> np.ndarray:
    """Elo-scale ratings of strengths (last axis): mean 1000, or model ``anchor`` at 1000."""
    ref = theta[..., anchor : anchor + 1] if anchor is not None else theta.mean(-1, keepdims=True)
    return ANCHOR + SCALE * (theta - ref) / math.log(10)


def rater_quality(votes: Sequence[Mapping[str, Any]], min_gold_votes: int, min_accuracy: float
                  ) -> dict[str, dict[str, Any]]:
    """Per rater: gold votes, correct ones, accuracy, and whether they are excluded (enough gold votes and an
    accuracy below ``min_accuracy``)."""
    out: dict[str, dict[str, Any]] = {}
    for v in votes:
        r = out.setdefault(v["rater"], {"votes": 0, "gold_votes": 0, "gold_correct": 0})
        r["votes"] += 1
        if v["gold"]:
            r["gold_votes"] += 1
            r["gold_correct"] += int(bool(v["correct"]))
    for r in out.values():
        r["accuracy"] = r["gold_correct"] / r["gold_votes"] if r["gold_votes"] else None
        r["excluded"] = bool(r["gold_votes"] >= min_gold_votes and r["accuracy"] < min_accuracy)
    return out


def leaderboard(votes: Sequence[Mapping[str, Any]], *, rounds: int = 1000, seed: int = 0, min_gold_votes: int = 3,
                min_gold_accuracy: float = 0.75, anchor: str | None = None, ridge: float = 1e-3) -> dict[str, Any]:
    """Rank the models in ``votes`` (rows of :meth:`Store.all_votes`: ``rater``, ``left_run``, ``right_run``,
    ``choice``, ``gold``, ``correct``).

    Gold votes only judge raters: raters with at least ``min_gold_votes`` gold votes and an accuracy below
    ``min_gold_accuracy`` are left out of the ranking and reported.

    Returns:
        ``models`` (best first: rating, 95 % interval, rank — 1 + the models whose lower bound beats this upper
        bound —, votes, wins, losses, ties), ``position_bias`` (Elo points for the left side with its interval, the
        left side's share of decisive votes), ``raters`` and the counts behind them.

    Raises:
        ConfigError: for an unknown anchor.
    """
    raters = rater_quality(votes, min_gold_votes, min_gold_accuracy)
    excluded = {name for name, r in raters.items() if r["excluded"]}
    used = [v for v in votes if not v["gold"] and v["rater"] not in excluded and v["left_run"] and v["right_run"]
            and v["left_run"] != v["right_run"]]
    names = sorted({v["left_run"] for v in used} | {v["right_run"] for v in used})
    report: dict[str, Any] = {
        "votes": len(used), "gold_votes": sum(bool(v["gold"]) for v in votes), "rounds": rounds,
        "scale": SCALE, "anchor": anchor or "mean", "models": [], "position_bias": None,
        "raters": {"total": len(raters), "excluded": [{"rater": k, **raters[k]} for k in sorted(excluded)],
                   "unchecked": sum(r["gold_votes"] < min_gold_votes for r in raters.values()),
                   "min_gold_votes": min_gold_votes, "min_gold_accuracy": min_gold_accuracy}}
    if len(names) < 2:
        return report
    if anchor is not None and anchor not in names:
        raise ConfigError(f"--anchor {anchor} has no votes; choose one of: {', '.join(names)}")
    idx = {n: i for i, n in enumerate(names)}
    m = len(names)
    left = np.array([idx[v["left_run"]] for v in used])
    right = np.array([idx[v["right_run"]] for v in used])
    y = np.array([OUTCOME[v["choice"]] for v in used])
    x, cy, counts = _cells(left, right, y, m, True)
    a = None if anchor is None else idx[anchor]
    w = fit_cells(x, cy, counts[None], m, ridge)[0]
    elo, h = to_elo(w[:m], a), SCALE * w[m] / math.log(10)
    lo = hi = elo
    hlo = hhi = h
    if rounds:
        rng = np.random.default_rng(seed)
        boot = np.concatenate([fit_cells(x, cy, rng.multinomial(len(used), counts / counts.sum(), size=part)
                                         .astype(np.float64), m, ridge)
                               for part in _chunks(rounds, 250)])
        belo = to_elo(boot[:, :m], a)
        lo, hi = np.percentile(belo, 2.5, axis=0), np.percentile(belo, 97.5, axis=0)
        bh = SCALE * boot[:, m] / math.log(10)
        hlo, hhi = float(np.percentile(bh, 2.5)), float(np.percentile(bh, 97.5))
    rows = []
    for i, name in enumerate(names):
        as_left, as_right = left == i, right == i
        wins = float((y[as_left] == 1).sum() + (y[as_right] == 0).sum())
        ties = float((y[as_left] == 0.5).sum() + (y[as_right] == 0.5).sum())
        n = int(as_left.sum() + as_right.sum())
        rows.append({"model": name, "rating": float(elo[i]), "lower": float(lo[i]), "upper": float(hi[i]),
                     "votes": n, "wins": int(wins), "losses": int(n - wins - ties), "ties": int(ties)})
    for r in rows:
        r["rank"] = 1 + sum(o["lower"] > r["upper"] for o in rows)
    rows.sort(key=lambda r: -r["rating"])
    decisive = y != 0.5
    report["models"] = rows
    report["position_bias"] = {"elo": float(h), "lower": float(hlo), "upper": float(hhi),
                               "left_win_rate": float(y[decisive].mean()) if decisive.any() else None,
                               "decisive_votes": int(decisive.sum())}
    return report


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]
