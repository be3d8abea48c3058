"""Drift monitoring: served samples in windows, compared with a reference drawn at deploy time, against thresholds
from a bootstrap null of reference-vs-reference windows.

At start each served run draws ``2 × reference`` samples with a fixed seed (in the background, between requests):
the first half is the reference, the second the null pool. Every sample the server then hands out is appended to
the current window; a full window is turned into features and compared with the reference by the run's modality
(:meth:`~genlab.modalities.base.Modality.drift_features` and
:meth:`~genlab.modalities.base.Modality.drift_statistics`: images KID and class-histogram distance on
feature-network features, text perplexity under the deploy-time model, length and distinct-2, the default an MMD
on the raw values). Thresholds: for ``null`` bootstrap windows (rows drawn with replacement from the pool, their
origins passed on so U-statistics never pair a draw with its copy) the same statistics are computed against the
reference; each statistic's threshold is the ``1 − α/k`` quantile of its null values (``k`` statistics, so at most
``α`` false alarms per window in all). A statistic above its threshold raises the window's alarm and a warning in
the log.

References:
    The reference-period thresholds of NannyML and Evidently; Bińkowski et al., 2018, arXiv:1801.01401 (KID).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from genlab.run import Run

log = logging.getLogger("genlab.serve")


@dataclass
class DriftCheck:
    """The result of comparing one window with the reference."""

    window: int
    closed: float
    n: int
    statistics: dict[str, float]
    thresholds: dict[str, float]
    alarms: list[str]
    seconds: float

    @property
    def alarm(self) -> bool:
        return bool(self.alarms)


@dataclass
class Reference:
    """Reference features, the null pool's features and the thresholds derived from them."""

    features: dict[str, np.ndarray]
    pool: dict[str, np.ndarray]
    thresholds: dict[str, float]
    null_mean: dict[str, float]
    built: float
    seconds: float


def select(features: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``idx`` of every feature array."""
    return {k: np.asarray(v)[idx] for k, v in features.items()}


def null_thresholds(stat: Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray], np.ndarray | None],
                                   dict[str, float]],
                    reference: Mapping[str, np.ndarray], pool: Mapping[str, np.ndarray], window: int, rounds: int,
                    alpha: float, seed: int = 0) -> tuple[dict[str, float], dict[str, float], dict[str, np.ndarray]]:
    """Thresholds from a bootstrap null: ``rounds`` windows of ``window`` rows drawn with replacement from ``pool``
    compared with ``reference`` by ``stat``; each statistic's threshold is its ``1 − alpha / k`` quantile.

    Returns:
        (thresholds, null means, the null values per statistic).
    """
    rng = np.random.default_rng(seed)
    size = len(next(iter(pool.values())))
    values: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(rounds):
        idx = rng.integers(0, size, window)
        for k, v in stat(reference, select(pool, idx), idx).items():
            values[k].append(v)
    arrays = {k: np.asarray(v) for k, v in values.items()}
    q = 1.0 - alpha / max(len(arrays), 1)
    thresholds = {k: float(np.quantile(v, q, method="higher")) for k, v in arrays.items()}
    return thresholds, {k: float(v.mean()) for k, v in arrays.items()}, arrays


class DriftMonitor:
    """Windows of one run's served samples against its deploy-time reference.

    Arguments:
        name: the served run's name.
        run: the run (its modality computes features and statistics).
        window: samples per window.
        reference: reference samples (as many again form the null pool).
        null: bootstrap windows behind the thresholds.
        alpha: false-alarm rate per window check, split over the statistics.
        seed: seed of the bootstrap.
        history: checks kept for ``/v1/drift``.
        on_check: ``fn(check)`` after each window check (metrics).
    """

    def __init__(self, name: str, run: Run, *, window: int = 500, reference: int | None = None, null: int = 200,
                 alpha: float = 0.05, seed: int = 0, history: int = 1000,
                 on_check: Callable[[DriftCheck], None] | None = None) -> None:
        self.name, self.run, self.window, self.null, self.alpha, self.seed = name, run, window, null, alpha, seed
        self.reference_size = reference or window
        self.on_check = on_check
        self.state = "waiting"  # waiting → building → ready (or failed)
        self.error: str | None = None
        self.reference: Reference | None = None
        self.checks: collections.deque[DriftCheck] = collections.deque(maxlen=history)
        self.dropped_windows = 0
        self._buffer: list[Tensor] = []
        self._filled = 0
        self._windows = 0
        self._pending: collections.deque[Tensor] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"genlab-drift-{name}", daemon=True)
        self._thread.start()

    @property
    def total_reference(self) -> int:
        """Samples to draw at deploy time: the reference and the null pool."""
        return 2 * self.reference_size

    # -- feeding -------------------------------------------------------------------------------------
    def set_reference(self, samples: Tensor) -> None:
        """Hand over the deploy-time draw (``total_reference`` samples); features and thresholds follow in the
        monitor's thread."""
        with self._cond:
            self.state = "building"
            self._reference_samples: Tensor | None = samples
            self._cond.notify()

    def fail(self, why: str) -> None:
        """Give up monitoring (the reference could not be drawn)."""
        self.state, self.error = "failed", why
        log.warning("drift monitor of %s is off: %s", self.name, why)

    def observe(self, samples: Tensor) -> None:
        """Add served samples to the current window (a full window is checked in the background)."""
        if self.state == "failed" or len(samples) == 0:
            return
        with self._cond:
            self._buffer.append(samples.detach().cpu())
            self._filled += len(samples)
            while self._filled >= self.window:
                rows = torch.cat(self._buffer)
                full, rest = rows[: self.window], rows[self.window :]
                self._buffer, self._filled = ([rest] if len(rest) else []), len(rest)
                if len(self._pending) >= 4:  # checks lag behind: keep memory bounded, count what was skipped
                    self.dropped_windows += 1
                else:
                    self._pending.append(full)
                self._cond.notify()

    # -- the monitor thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not (self.state == "building" and self._reference_samples is not None) \
                        and not (self.state == "ready" and self._pending):
                    self._cond.wait()
                if self._stopping:
                    return
                task: Tensor | None = None
                ref_samples = self._reference_samples if self.state == "building" else None
                if ref_samples is None:
                    task = self._pending.popleft()
                self._reference_samples = None
            try:
                if ref_samples is not None:
                    self._build(ref_samples)
                elif task is not None:
                    self._check(task)
            except Exception as e:  # a failing statistic must not take the server down
                if ref_samples is not None:
                    self.fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                else:
                    log.warning("drift check of %s failed: %s", self.name, e)

    def _features(self, samples: Tensor) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return self.run.modality.drift_features(self.run, samples)

    def _stat(self, reference: Mapping[str, np.ndarray], window: Mapping[str, np.ndarray],
              origin: np.ndarray | None) -> dict[str, float]:
        return self.run.modality.drift_statistics(self.run, reference, window, origin)

    def _build(self, samples: Tensor) -> None:
        t0 = time.perf_counter()
        r = self.reference_size
        feats = self._features(samples)
        ref = select(feats, np.arange(r))
        pool = select(feats, np.arange(r, len(samples)))
        thresholds, means, _ = null_thresholds(self._stat, ref, pool, self.window, self.null, self.alpha, self.seed)
        self.reference = Reference(ref, pool, thresholds, means, time.time(), time.perf_counter() - t0)
        with self._cond:
            self.state = "ready"
            self._cond.notify()
        log.info("drift reference of %s ready: %d samples, thresholds %s", self.name, r,
                 {k: f"{v:.4g}" for k, v in thresholds.items()})

    def _check(self, samples: Tensor) -> DriftCheck:
        assert self.reference is not None
        t0 = time.perf_counter()
        stats = self._stat(self.reference.features, self._features(samples), None)
        th = self.reference.thresholds
        alarms = [k for k, v in stats.items() if k in th and (not math.isfinite(v) or v > th[k])]
        self._windows += 1
        check = DriftCheck(self._windows, time.time(), len(samples), stats, dict(th), alarms,
                           time.perf_counter() - t0)
        self.checks.append(check)
        if alarms:
            log.warning("drift in %s, window %d: %s", self.name, check.window,
                        ", ".join(f"{k} {stats[k]:.4g} > {th[k]:.4g}" for k in alarms))
        if self.on_check is not None:
            self.on_check(check)
        return check

    def check_now(self, samples: Tensor) -> DriftCheck:
        """Compare ``samples`` with the reference at once, in the caller's thread (benchmarks, tests)."""
        return self._check(samples)

    def build_now(self, samples: Tensor) -> None:
        """Build the reference from ``samples`` at once, in the caller's thread."""
        self.state = "building"
        self._build(samples)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until the reference is built (or failed); True when ready."""
        end = time.monotonic() + timeout
        while self.state in ("waiting", "building") and time.monotonic() < end:
            time.sleep(0.02)
        return self.state == "ready"

    def idle(self) -> bool:
        """No window waits for its check."""
        return not self._pending

    # -- reporting -----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: reference, thresholds, the current window's fill and every check kept."""
        ref = self.reference
        return {"state": self.state, "error": self.error, "window": self.window,
                "reference_size": self.reference_size, "null_windows": self.null, "alpha": self.alpha,
                "filling": self._filled, "dropped_windows": self.dropped_windows,
                "thresholds": ref.thresholds if ref else None, "null_mean": ref.null_mean if ref else None,
                "reference_seconds": ref.seconds if ref else None,
                "checks": [{**asdict(c), "alarm": c.alarm} for c in self.checks]}

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(2.0)


def reference_seed(seed: int) -> int:
    """Seed of the deploy-time reference draw (distinct from request seeds near 0)."""
    return 1_000_003 + seed


