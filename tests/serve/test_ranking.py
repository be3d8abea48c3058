"""Bradley–Terry ranking: against scikit-learn's logistic regression (the Chatbot Arena construction), a synthetic
tournament with known strengths and position bias, ties as half wins, rater exclusion, speed of the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genlab.errors import ConfigError
from genlab.serve.ranking import bradley_terry, leaderboard, rater_quality, to_elo

TRUE_ELO = np.array([1300.0, 1230, 1160, 1090, 1020, 950, 880, 810, 740, 670])


def tournament(n: int, h_elo: float = 40.0, tie_share: float = 0.3, seed: int = 0) -> list[dict]:
    """Votes between 10 models of known Elo strengths with ``E[outcome] = σ(θ_l − θ_r + h)`` for the left side,
    ties counting half: a tie with probability ``tie_share · min(p, 1 − p)``, else a win with the rest of ``p``."""
    rng = np.random.default_rng(seed)
    m = len(TRUE_ELO)
    theta = TRUE_ELO * math.log(10) / 400
    h = h_elo * math.log(10) / 400
    votes = []
    for _ in range(n):
        i, j = rng.choice(m, 2, replace=False)
        p = 1 / (1 + math.exp(-(theta[i] - theta[j] + h)))
        tie = tie_share * min(p, 1 - p)
        u = rng.random()
        choice = "tie" if u < tie else ("a" if u < tie + p - tie / 2 else "b")
        votes.append({"rater": f"r{rng.integers(20)}", "left_run": f"m{i}", "right_run": f"m{j}", "choice": choice,
                      "gold": False, "correct": None})
    return votes


def test_matches_sklearn_logistic_regression() -> None:
    """The MLE equals an unpenalised logistic regression on ±1 model indicators, ties duplicated as a win and a
    loss (Chiang et al. 2024's compute_mle_elo), up to the free shift."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    m, n = 5, 3000
    left = rng.integers(0, m, n)
    right = (left + rng.integers(1, m, n)) % m
    strength = np.array([0.8, 0.3, 0.0, -0.2, -0.9])
    p = 1 / (1 + np.exp(-(strength[left] - strength[right] + 0.25)))
    u = rng.random(n)
    y = np.where(u < 0.15, 0.5, (rng.random(n) < p).astype(float))
    theta, h = bradley_terry(left, right, y, m, ridge=0.0)
    x = np.zeros((n, m + 1))
    x[np.arange(n), left] = 1
    x[np.arange(n), right] = -1
    x[:, m] = 1
    ties = y == 0.5  # every vote twice: a win twice, a tie once as a win and once as a loss
    xx = np.concatenate([x, x])
    yy = np.concatenate([np.where(ties, 1.0, y), np.where(ties, 0.0, y)])
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000).fit(xx, yy)
    ref = lr.coef_[0, :m] - lr.coef_[0, :m].mean()
    np.testing.assert_allclose(theta, ref, atol=1e-5)
    assert h == pytest.approx(lr.coef_[0, m], abs=1e-5)


def test_recovers_known_strengths_and_position_bias() -> None:
    res = leaderboard(tournament(10_000), rounds=300, seed=0)
    rows = {r["model"]: r for r in res["models"]}
    est = np.array([rows[f"m{i}"]["rating"] for i in range(10)])
    truth = TRUE_ELO - TRUE_ELO.mean() + 1000
    assert [r["model"] for r in res["models"]] == [f"m{i}" for i in range(10)]  # the known order
    assert np.abs(est - truth).max() < 35
    covered = sum(rows[f"m{i}"]["lower"] <= truth[i] <= rows[f"m{i}"]["upper"] for i in range(10))
    assert covered >= 8  # 95 % intervals
    pb = res["position_bias"]
    assert pb["lower"] < 40 < pb["upper"] and pb["lower"] > 0
    assert pb["left_win_rate"] > 0.5
    assert np.mean(est) == pytest.approx(1000, abs=1e-6)
    assert rows["m0"]["rank"] == 1 and rows["m9"]["rank"] >= 9


def test_ties_are_half_wins_and_elo_scale() -> None:
    # A beats B 3 times, loses once, ties twice: wins 3 + 1 = 4 of 6 → odds 2, θ_A − θ_B = ln 2
    v = [("a", "x", "y")] * 3 + [("b", "x", "y")] + [("tie", "x", "y")] * 2
    votes = [{"rater": "r", "left_run": lr, "right_run": rr, "choice": c, "gold": False, "correct": None}
             for c, lr, rr in v]
    votes += [{**d, "left_run": d["right_run"], "right_run": d["left_run"],
               "choice": {"a": "b", "b": "a"}.get(d["choice"], d["choice"])} for d in votes]  # balance the sides
    res = leaderboard(votes, rounds=0, ridge=0.0)
    r = {row["model"]: row["rating"] for row in res["models"]}
    assert r["x"] - r["y"] == pytest.approx(400 * math.log10(2), abs=1e-6)
    assert (r["x"] + r["y"]) / 2 == pytest.approx(1000)
    assert res["position_bias"]["elo"] == pytest.approx(0, abs=1e-6)
    assert to_elo(np.array([0.0, math.log(10)]), anchor=0).tolist() == pytest.approx([1000, 1400])


def test_raters_below_gold_accuracy_are_excluded() -> None:
    votes = tournament(400)
    for k in range(6):
        votes.append({"rater": "careless", "left_run": None, "right_run": None, "choice": "a", "gold": True,
                      "correct": k == 0})
        votes.append({"rater": "r1", "left_run": None, "right_run": None, "choice": "a", "gold": True,
                      "correct": True})
    votes += [{"rater": "careless", "left_run": "m9", "right_run": "m0", "choice": "a", "gold": False,
               "correct": None}] * 200
    q = rater_quality(votes, 3, 0.75)
    assert q["careless"]["excluded"] and q["careless"]["accuracy"] == pytest.approx(1 / 6)
    assert not q["r1"]["excluded"]
    res = leaderboard(votes, rounds=0)
    assert [r["rater"] for r in res["raters"]["excluded"]] == ["careless"]
    assert res["votes"] == 400 and res["gold_votes"] == 12
    assert res["models"][0]["model"] == "m0"  # the careless rater's 200 votes for m9 are not counted


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="no votes"):
        bradley_terry([], [], [], 2)
    with pytest.raises(ConfigError, match="anchor"):
        leaderboard(tournament(50), rounds=0, anchor="nope")
    assert leaderboard([], rounds=10)["models"] == []
