"""Speed and accuracy of the arena leaderboard: Bradley–Terry MLE with 1,000 bootstrap rounds over 10 models ×
10,000 votes (goal < 5 s), on a synthetic tournament with known strengths (Elo 1300 … 700), a known position bias
and ties (their share grows as the sides get closer, the expected outcome is that of Bradley–Terry).

    python benchmarks/serve_ranking.py --votes 10000 --models 10 --rounds 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from _common import print_table, write_results
from genlab.serve.ranking import leaderboard


def tournament(models: int, votes: int, h_elo: float, seed: int) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    elo = np.linspace(1300, 700, models)
    theta = elo * math.log(10) / 400
    h = h_elo * math.log(10) / 400
    i = rng.integers(0, models, votes)
    j = (i + rng.integers(1, models, votes)) % models
    p = 1 / (1 + np.exp(-(theta[i] - theta[j] + h)))
    # E[outcome] = p with ties as half wins: a tie with probability 0.3·min(p, 1 − p), else a win with the rest of p
    t = 0.3 * np.minimum(p, 1 - p)
    u = rng.random(votes)
    choice = np.where(u < t, "tie", np.where(u < t + p - t / 2, "a", "b"))
    rows = [{"rater": "r", "left_run": f"m{a:02d}", "right_run": f"m{b:02d}", "choice": str(c), "gold": False,
             "correct": None} for a, b, c in zip(i, j, choice, strict=True)]
    return rows, elo - elo.mean() + 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--votes", type=int, default=10_000)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bias", type=float, default=30.0, help="true left-side bias in Elo points")
    args = ap.parse_args()
    votes, truth = tournament(args.models, args.votes, args.bias, 0)
    times, res = [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = leaderboard(votes, rounds=args.rounds, seed=0)
        times.append(time.perf_counter() - t0)
    assert res is not None
    rows = {r["model"]: r for r in res["models"]}
    est = np.array([rows[f"m{k:02d}"]["rating"] for k in range(args.models)])
    covered = sum(rows[f"m{k:02d}"]["lower"] <= truth[k] <= rows[f"m{k:02d}"]["upper"] for k in range(args.models))
    order_ok = [r["model"] for r in res["models"]] == [f"m{k:02d}" for k in range(args.models)]
    pb = res["position_bias"]
    row = {"models": args.models, "votes": args.votes, "rounds": args.rounds, "best_s": min(times),
           "median_s": float(np.median(times)), "max_abs_error_elo": float(np.abs(est - truth).max()),
           "ci_covered": f"{covered}/{args.models}", "order_recovered": order_ok,
           "bias_elo": pb["elo"], "bias_ci": f"{pb['lower']:.1f}..{pb['upper']:.1f}", "true_bias": args.bias,
           "goal_under_5s": min(times) < 5}
    print_table("leaderboard: Bradley–Terry + bootstrap", [row])
    print(f"wrote {write_results('serve_ranking', {'result': row, 'times_s': times})}")


if __name__ == "__main__":
    main()
