"""Shared fixtures: fixed seeds, tiny per-family configs and tiny datasets per data kind.

Every registered family must have an entry in ``TINY`` (small enough for a few dozen CPU steps in well under a
second each) and its data kind an entry in ``DATA``; the contract test fails otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import genlab  # noqa: F401  (registers families and datasets)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

#: tiny model options per family (strings or values, as on the command line)
TINY: dict[str, dict[str, object]] = {
    "vae": {"widths": (16, 32), "latent_dim": 8, "hidden": 64, "class_dim": 8, "iwae_k": 8},
    "gan": {"g_widths": (32, 16), "d_widths": (16, 32), "d_features": 64, "z_dim": 16, "class_dim": 8},
}

#: a small built-in dataset per data kind, and extra data options for it
DATA: dict[str, tuple[str, dict[str, object]]] = {
    "image": ("digits", {}),
}

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    genlab.api.seed_everything(0)


@pytest.fixture(scope="session")
def splits() -> dict[str, tuple[object, object]]:
    """Loaded (train, test) splits per data kind, cached for the session."""
    from genlab.config import build
    from genlab.data import modality

    out = {}
    for kind, (name, opts) in DATA.items():
        mod = modality(kind)
        train, test, _ = mod.load(build(mod.config_cls, {"data": name, **opts}))
        out[kind] = (train, test)
    return out


def shared_file(name: str) -> Path:
    """A file from ../shared/data, or skip the test when it is absent."""
    p = SHARED / name
    if not p.is_file():
        pytest.skip(f"{p} not present")
    return p
