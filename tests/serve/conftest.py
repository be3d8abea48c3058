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
