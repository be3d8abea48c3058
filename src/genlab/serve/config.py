"""Options of ``genlab serve``: where it listens, who may call it, what a request may ask for, how it batches and
what the drift monitor and the arena do."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from genlab.config import check
from genlab.errors import ConfigError

#: environment variable holding the bearer key (``Authorization: Bearer <key>``)
API_KEY_ENV = "GENLAB_API_KEY"


@dataclass(frozen=True)
class ServeConfig:
    """How the server runs.

    Arguments:
        host: address to bind; anything but a loopback address needs an API key.
        port: TCP port (0 = any free port).
        db: ratings database: a SQLite file path (WAL mode) or an SQLAlchemy URL (``postgresql://user@host/db``).
        api_key: bearer key every route but ``/healthz`` requires (default: ``$GENLAB_API_KEY``; None = open).
        max_n: most samples one request may ask for.
        max_tokens: most tokens one text sample may ask for (the ``max_tokens`` sampling option).
        max_steps: most sampler steps one request may ask for (the ``steps`` sampling option).
        max_body: largest request body in bytes.
        timeout: seconds a request may take (queueing included) before it is cancelled with 504.
        queue_size: requests waiting per model beyond which new ones get 429 with ``Retry-After``.
        max_batch: most samples one micro-batched model call draws.
        batch_wait: the most seconds a worker waits, after a call that served several requests, for those clients
            to come back and join the requests that queued meanwhile (a lone client never waits; 0: batch only what
            queued meanwhile).
        batching: micro-batch concurrent compatible requests to one model (False: one call per request).
        drift_window: served samples per drift window (0 = no drift monitor).
        drift_reference: reference samples drawn at deploy time (default: the window size); as many again are
            drawn for the bootstrap null.
        drift_null: bootstrap reference-vs-reference windows behind each threshold.
        drift_alpha: false-alarm rate per window check (split evenly over the statistics).
        drift_options: sampling options the reference is drawn with (e.g. ``{"max_tokens": 64}``; each family
            takes those it has); served traffic with other options shows up as drift, as it should.
        gold_rate: share of arena pairs that are gold pairs (a real example against a corrupted one).
        min_gold_votes: gold votes a rater needs before their accuracy can exclude them.
        min_gold_accuracy: raters below this share of correct gold votes are excluded from the ranking.
        bootstrap: rounds of the leaderboard's bootstrap intervals.
        device: ``auto``, ``cpu`` or ``cuda[:N]`` for the models.
        threads: PyTorch's CPU threads for the models (None: one fewer than the CPU cores, at least 1, so the HTTP
            event loop keeps a core of its own; see :func:`model_threads`).
        seed: seed of the server's own draws (arena pairs, reference sets); requests still choose theirs.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    db: str = "ratings.sqlite"
    api_key: str | None = field(default_factory=lambda: os.environ.get(API_KEY_ENV) or None)
    max_n: int = 16
    max_tokens: int = 512
    max_steps: int = 250
    max_body: int = 2 * 1024 * 1024
    timeout: float = 60.0
    queue_size: int = 32
    max_batch: int = 64
    batch_wait: float = 0.03
    batching: bool = True
    drift_window: int = 500
    drift_reference: int | None = None
    drift_null: int = 200
    drift_alpha: float = 0.05
    drift_options: dict[str, Any] = field(default_factory=dict)
    gold_rate: float = 0.1
    min_gold_votes: int = 3
    min_gold_accuracy: float = 0.75
    bootstrap: int = 1000
    device: str = "auto"
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check(0 <= self.port <= 65535, f"--port must be in 0..65535, got {self.port}")
        check(self.max_n >= 1 and self.max_tokens >= 1 and self.max_steps >= 1, "caps must be at least 1")
        check(self.max_body >= 1024, "--max-body must be at least 1024 bytes")
        check(self.timeout > 0, "--timeout must be positive")
        check(self.queue_size >= 1 and self.max_batch >= 1, "--queue-size and --max-batch must be at least 1")
        check(self.batch_wait >= 0, "--batch-wait must be >= 0")
        check(self.drift_window == 0 or self.drift_window >= 4, "--drift-window must be 0 (off) or at least 4")
        check(self.drift_reference is None or self.drift_reference >= 4, "--drift-reference must be at least 4")
        check(self.drift_null >= 20, "--drift-null must be at least 20")
        check(0 < self.drift_alpha < 1, "--drift-alpha must be in (0, 1)")
        check(0 <= self.gold_rate <= 1, "--gold-rate must be in [0, 1]")
        check(0 <= self.min_gold_accuracy <= 1, "--min-gold-accuracy must be in [0, 1]")
        check(self.min_gold_votes >= 1, "--min-gold-votes must be at least 1")
        check(self.bootstrap >= 0, "--bootstrap must be >= 0")
        check(self.threads is None or self.threads >= 1, "--threads must be at least 1")
        check(self.api_key is None or len(self.api_key) >= 6, f"{API_KEY_ENV} must be at least 6 characters")

    def check_bind(self) -> None:
        """Refuse to listen beyond this machine without a key.

        Raises:
            ConfigError: for a non-loopback ``host`` and no API key.
        """
        if self.api_key is None and not is_loopback(self.host):
            raise ConfigError(f"refusing to bind {self.host} without an API key: set {API_KEY_ENV}, or bind "
                              "127.0.0.1")


def model_threads(threads: int | None, cores: int | None = None) -> int:
    """PyTorch CPU threads for the served models: ``threads`` when given, else the CPU cores less one (at least 1).

    The models share the process with the event loop that parses requests and writes answers, under one GIL. With
    every core given to PyTorch, its threads and the event loop take turns on a core: on 2 cores the GPT of
    ``benchmarks/serve_batching.py`` answered 45 requests/s with 2 threads and 111 with 1.
    """
    if threads is not None:
        return threads
    n = cores if cores is not None else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                         else os.cpu_count() or 1)
    return max(1, n - 1)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
