"""Shared fixtures: fixed seeds, tiny per-family configs and tiny datasets per data kind.

Every registered family must have an entry in ``TINY`` (small enough for a few dozen CPU steps in well under a
second each) and every registered modality an entry in ``DATA``; the contract tests fail otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import genlab  # (registers families and datasets)

# respect OMP_NUM_THREADS: two threads on a loaded 2-core machine can run ~7x slower than one
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, min(2, os.cpu_count() or 1)))

#: tiny model options per family (strings or values, as on the command line)
TINY: dict[str, dict[str, object]] = {
    "gpt": {"n_layer": 2, "n_head": 2, "n_embd": 32},
    "rnn": {"n_layer": 1, "hidden": 32, "n_embd": 16},
    "vae": {"widths": (16, 32), "latent_dim": 8, "hidden": 64, "class_dim": 8, "iwae_k": 8, "seq_embd": 16,
            "seq_decoder": 32, "seq_layers": 1},
    "flow": {"levels": 2, "steps": 2, "hidden": 16, "class_dim": 4, "bins": 4},
    "pixelcnn": {"hidden": 12, "layers": 2, "kernel": 3, "class_dim": 4},
    "gan": {"g_widths": (32, 16), "d_widths": (16, 32), "d_features": 64, "z_dim": 16, "class_dim": 8, "pac": 2},
    "ssvae": {"widths": (16, 32), "latent_dim": 8, "hidden": 64, "classifier_features": 32, "iwae_k": 4,
              "labels": 30},
    "diffusion": {"model_channels": 16, "channel_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (4,),
                  "heads": 1, "dropout": 0.0, "num_timesteps": 10, "bound_timesteps": 2, "grid_width": 32,
                  "grid_layers": 1},
}

#: a small built-in dataset per modality, and extra data options for it
DATA: dict[str, tuple[str, dict[str, object]]] = {
    "image": ("digits", {}),
    "vector": ("moons", {}),
    "text": ("lee", {"block_size": 16}),
    "molecule": (str(Path(__file__).resolve().parent / "data" / "moses-400.smi"), {}),
    "music": (str(Path(__file__).resolve().parent / "data" / "chorales-mini"), {"length": 32, "block_size": 64}),
    "tabular": ("penguins", {}),
}

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    genlab.api.seed_everything(0)


@pytest.fixture(autouse=True, scope="session")
def _image_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`genlab eval` in tests: the fast classifier features only (Inception tests ask for it), a private cache."""
    from genlab.metrics import features

    mp = pytest.MonkeyPatch()
    mp.setattr(features, "DEFAULT_FEATURES", ("classifier",))
    mp.setenv("GENLAB_CACHE", str(tmp_path_factory.mktemp("genlab-cache")))
    yield
    mp.undo()


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Run a test on one torch thread (tiny sampling loops are dominated by thread hand-offs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def family_modalities() -> list[tuple[str, str]]:
    """Every (family, modality) pair a family declares: the modalities producing a form the family models."""
    return [(family, kind) for family, cls in genlab.MODELS.items() for kind, mod in genlab.MODALITIES.ordered()
            if set(cls.data_forms) & set(mod.forms)]


def form_of(family: str, kind: str) -> str:
    """The form a family sees data of modality ``kind`` in."""
    from genlab.api import pick_form

    return pick_form(genlab.MODELS[family], genlab.MODALITIES[kind])


class LoadedSplits:
    """(train, test) of each modality's small dataset, loaded on first use: ``splits[kind]`` in the modality's
    first form, ``splits[kind, form]`` in another."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[object, object]] = {}

    def __getitem__(self, key: str | tuple[str, str]) -> tuple[object, object]:
        from genlab.config import build

        kind, form = (key, genlab.MODALITIES[key].forms[0]) if isinstance(key, str) else key
        if (kind, form) not in self._cache:
            name, opts = DATA[kind]
            mod = genlab.MODALITIES[kind]
            s = mod.load(build(mod.config_cls, {"data": name, **opts}), form)
            self._cache[kind, form] = (s.train, s.test)
        return self._cache[kind, form]


@pytest.fixture(scope="session")
def splits() -> LoadedSplits:
    """Loaded (train, test) splits per modality, cached for the session."""
    return LoadedSplits()


def shared_file(name: str) -> Path:
    """A file from ../shared/data, or skip the test when it is absent."""
    p = SHARED / name
    if not p.is_file():
        pytest.skip(f"{p} not present")
    return p
