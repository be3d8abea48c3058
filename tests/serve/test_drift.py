"""Drift statistics against direct formulas and scipy, the bootstrap null (false alarms and power on synthetic
features), and the monitor end to end on a vector run through the modality's default hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genlab
from genlab.metrics.drift import histogram_tv, ks_distance, mean_shift, mmd2, poly_kernel
from genlab.serve.drift import DriftMonitor, null_thresholds


def test_mmd2_matches_the_direct_u_statistic() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    xx = np.mean([k(x[i], x[j]) for i in range(7) for j in range(7) if i != j])
    yy = np.mean([k(y[i], y[j]) for i in range(5) for j in range(5) if i != j])
    xy = np.mean([k(a, b) for a in x for b in y])
    assert mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    assert poly_kernel(x, y).shape == (7, 5)
    # a bootstrap window repeating draws: copies of one draw are never paired
    idx = np.array([0, 0, 1, 2, 2, 2])
    yy_b = np.mean([k(y[idx[i]], y[idx[j]]) for i in range(6) for j in range(6) if idx[i] != idx[j]])
    xy_b = np.mean([k(a, y[j]) for a in x for j in idx])
    assert mmd2(x, y[idx], idx) == pytest.approx(xx + yy_b - 2 * xy_b, rel=1e-12)


def test_ks_tv_mean_shift() -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(0.3, 1.2, size=150)
    assert ks_distance(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    assert histogram_tv(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3) == pytest.approx(0.25)
    assert histogram_tv(np.array([0, 0]), np.array([2, 2]), 3) == pytest.approx(1.0)
    assert mean_shift(np.array([1.0, 3.0]), np.array([5.0])) == pytest.approx(3.0)


def stat(ref: dict, win: dict, origin: np.ndarray | None) -> dict[str, float]:
    return {"mmd": mmd2(ref["x"], win["x"], origin), "mean": mean_shift(ref["x"][:, 0], win["x"][:, 0])}


def test_null_thresholds_false_alarms_and_power() -> None:
    rng = np.random.default_rng(2)
    w = 100
    ref, pool = {"x": rng.normal(size=(w, 4))}, {"x": rng.normal(size=(w, 4))}
    th, means, values = null_thresholds(stat, ref, pool, w, 200, 0.05, seed=0)
    assert set(th) == {"mmd", "mean"} and len(values["mmd"]) == 200
    assert th["mmd"] > means["mmd"]
    fresh = [stat(ref, {"x": rng.normal(size=(w, 4))}, None) for _ in range(40)]
    alarms = sum(any(s[k] > th[k] for k in th) for s in fresh)
    assert alarms <= 6  # ≤ 5 % expected: 2 of 40, binomial tail
    shift = np.array([0.6, 0, 0, 0])
    shifted = [stat(ref, {"x": rng.normal(size=(w, 4)) + shift}, None) for _ in range(10)]
    assert all(any(s[k] > th[k] for k in th) for s in shifted)


def test_monitor_on_a_vector_run(tmp_path) -> None:
    run = genlab.train("flow", "moons", out=tmp_path / "flow", max_steps=2, batch_size=16, quiet=True,
                       device="cpu", eval_every=0, n_samples=4, steps=2, hidden=16)
    mon = DriftMonitor("flow", run, window=64, null=40, alpha=0.05)
    try:
        g = torch.Generator().manual_seed(5)
        ref = run.model.sample(128, generator=g)
        mon.build_now(ref)
        assert mon.state == "ready" and set(mon.reference.thresholds) == {"mmd"}
        same = mon.check_now(run.model.sample(64, generator=g))
        moved = mon.check_now(run.model.sample(64, generator=g) + 3.0)
        assert moved.alarm and moved.statistics["mmd"] > same.statistics["mmd"]
        mon.observe(run.model.sample(70, generator=g))  # a full window is queued, 6 samples wait for the next
        for _ in range(200):
            if mon.checks and len(mon.checks) == 3:
                break
            import time

            time.sleep(0.02)
        snap = mon.snapshot()
        assert snap["state"] == "ready" and snap["filling"] == 6 and len(snap["checks"]) == 3
    finally:
        mon.stop()
