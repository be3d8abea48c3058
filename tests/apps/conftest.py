"""Tiny trained runs on ``digits`` shared by the application tests (a few steps each: they check plumbing and
formulas, not quality)."""

from __future__ import annotations

from pathlib import Path

import pytest

import genlab
from tests.conftest import TINY

FAST = {"batch_size": 16, "quiet": True, "device": "cpu", "eval_every": 0, "n_samples": 4}


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, genlab.Run]:
    """Run folders, loaded back: ``vae`` (unconditional), ``cvae`` (conditional), ``flow`` (unconditional),
    ``diffusion`` (conditional), ``ssvae`` (30 labels), ``gan`` and ``pixelcnn`` (unconditional)."""
    root: Path = tmp_path_factory.mktemp("apps-runs")
    plan = {"vae": ("vae", {"conditional": False}), "cvae": ("vae", {}), "flow": ("flow", {"conditional": False}),
            "diffusion": ("diffusion", {}), "ssvae": ("ssvae", {}), "gan": ("gan", {"conditional": False}),
            "pixelcnn": ("pixelcnn", {"conditional": False})}
    runs = {}
    for name, (family, extra) in plan.items():
        genlab.train(family, "digits", out=root / name, max_steps=8, **FAST, **{**TINY[family], **extra})
        runs[name] = genlab.load(root / name, device="cpu")
    return runs
