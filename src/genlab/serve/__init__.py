"""Serve, rate and watch: an HTTP API and a web page for every run, pairwise human evaluation in a real database,
and drift monitoring.

* :func:`serve` — ``genlab serve RUN...``: FastAPI + uvicorn on 127.0.0.1 by default (:mod:`genlab.serve.app`).
* :func:`create_app` — the ASGI app, for tests or another server.
* :func:`leaderboard` — ``genlab leaderboard --db …``: Bradley–Terry ranking with bootstrap intervals
  (:mod:`genlab.serve.ranking`) from the ratings store (:mod:`genlab.serve.store`).
* :mod:`genlab.serve.drift` — reference windows and bootstrap-null thresholds over each modality's drift
  statistics.

Everything here reaches the data through the run's modality and the family's capability flags; it never tests a
kind of data by name. Needs the ``serve`` extra: ``pip install 'genlab[serve]'``.
"""

from __future__ import annotations

import logging
from typing import Any

from genlab.serve.config import ServeConfig


def create_app(runs: Any, config: ServeConfig | None = None, store: Any = None) -> Any:
    """The server as an ASGI app (see :func:`genlab.serve.app.create_app`)."""
    from genlab.serve.app import create_app as make

    return make(runs, config, store)


def serve(runs: list[str], config: ServeConfig | None = None, *, log_level: str = "info",
          ready: Any = None) -> None:
    """Load the runs and serve them until interrupted.

    Arguments:
        runs: run folders (``PATH`` or ``NAME=PATH``).
        config: the server's options; binding beyond loopback needs ``config.api_key``.
        log_level: uvicorn's log level.
        ready: optional ``fn(host, port)`` called once the server listens.

    Raises:
        ConfigError: for a non-loopback host without a key, or bad runs/options; ExtraMissing without the extra.
    """
    import torch

    from genlab.extras import require
    from genlab.serve.config import model_threads

    cfg = config or ServeConfig()
    cfg.check_bind()
    uvicorn = require("uvicorn", "serve", "genlab serve")
    app = create_app(runs, cfg)
    logger = logging.getLogger("genlab.serve")
    if not logger.handlers:  # drift alarms and monitor states beside uvicorn's own lines
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:  genlab: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if log_level in ("critical", "error", "warning") else logging.INFO)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=log_level,
                                           timeout_graceful_shutdown=5))
    if ready is not None:
        import threading
        import time

        def wait() -> None:
            while not server.started:
                time.sleep(0.05)
            sockets = [s for srv in server.servers for s in srv.sockets]
            ready(cfg.host, sockets[0].getsockname()[1] if sockets else cfg.port)

        threading.Thread(target=wait, daemon=True).start()
    torch.set_num_threads(model_threads(cfg.threads))
    server.run()


def leaderboard(db: str, *, rounds: int = 1000, seed: int = 0, min_gold_votes: int = 3,
                min_gold_accuracy: float = 0.75, anchor: str | None = None) -> dict[str, Any]:
    """The Bradley–Terry leaderboard of the votes in a ratings database.

    Arguments:
        db: a SQLite file or an SQLAlchemy/PostgreSQL URL.
        rounds: bootstrap rounds of the 95 % intervals.
        seed: seed of the bootstrap.
        min_gold_votes, min_gold_accuracy: raters with at least that many gold votes and a lower accuracy are
            excluded (and reported).
        anchor: a model pinned at 1000 (default: the mean rating is 1000).

    Raises:
        ConfigError: for a missing database file or an unknown anchor.
    """
    from pathlib import Path

    from genlab.errors import ConfigError
    from genlab.serve.ranking import leaderboard as rank
    from genlab.serve.store import Store

    if "://" not in db and not Path(db).is_file():
        raise ConfigError(f"ratings database {db} does not exist; give the --db that genlab serve wrote")
    if rounds < 0:
        raise ConfigError(f"--rounds must be >= 0, got {rounds}")
    store = Store(db)
    try:
        votes = store.all_votes()
    finally:
        store.close()
    out = rank(votes, rounds=rounds, seed=seed, min_gold_votes=min_gold_votes, min_gold_accuracy=min_gold_accuracy,
               anchor=anchor)
    out["db"] = db
    return out


__all__ = ["ServeConfig", "create_app", "leaderboard", "serve"]
