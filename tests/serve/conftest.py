"""Tiny runs trained for a few steps, shared by the server tests, and a server config that suits them."""

from __future__ import annotations

from pathlib import Path

import pytest

import genlab
from tests.conftest import TINY

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'genlab[serve]'")

FAST = {"max_steps": 2, "batch_size": 16, "quiet": True, "device": "cpu", "eval_every": 0, "n_samples": 4}


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """vae (conditional, latent space), diffusion (inpaints) on digits and gpt (streams text) on lee."""
    root = tmp_path_factory.mktemp("serve-runs")
    runs = {
        "vae": genlab.train("vae", "digits", out=root / "vae", **FAST, **TINY["vae"]),
        "diffusion": genlab.train("diffusion", "digits", out=root / "diffusion", **FAST, **TINY["diffusion"]),
        "gpt": genlab.train("gpt", "lee", out=root / "gpt", block_size=16, **FAST, **TINY["gpt"]),
    }
    return {name: Path(r.path) for name, r in runs.items() if r.path is not None}


def tiny_config(tmp_path: Path, **over: object):
    from genlab.serve import ServeConfig

    base = dict(db=str(tmp_path / "ratings.sqlite"), api_key=None, drift_window=8, drift_null=40, max_n=8,
                gold_rate=0.0, timeout=30.0, drift_options={"steps": 4, "max_tokens": 8})
    base.update(over)
    return ServeConfig(**base)  # type: ignore[arg-type]


class LiveServer:
    """The app under uvicorn on a free loopback port, in a thread (stopped by :meth:`stop`)."""

    def __init__(self, app: object) -> None:
        import threading
        import time

        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def live(served_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """One live server for the openai-client and browser tests."""
    from genlab.serve import create_app

    tmp = tmp_path_factory.mktemp("live")
    srv = LiveServer(create_app({k: str(v) for k, v in served_runs.items()}, tiny_config(tmp, gold_rate=0.0)))
    yield srv
    srv.stop()
