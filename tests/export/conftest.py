"""Tiny trained runs of every family and their ONNX exports, built once per session (exporting is the slow part)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, TINY


def needs_export_extra() -> None:
    """Skip the calling test module when the ``export`` extra (onnx, onnxruntime) is not installed."""
    for name in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(name, reason="the export extra is not installed: pip install 'genlab[export]'")

#: run key → (family, data, extra options)
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "vae": ("vae", "digits", {}),
    "gan": ("gan", "digits", {}),
    "flow": ("flow", "digits", {}),
    "flow-vector": ("flow", "moons", {}),
    "diffusion": ("diffusion", "digits", {}),
    "diffusion-mlp": ("diffusion", "digits", {"denoiser": "mlp", "prediction": "x0", "mlp_widths": (32, 32)}),
    "pixelcnn": ("pixelcnn", "digits", {}),
    "ssvae": ("ssvae", "digits", {}),
    "gpt": ("gpt", "lee", {"block_size": 16}),
    "rnn": ("rnn", "lee", {"block_size": 16}),
    "gpt-molecule": ("gpt", DATA["molecule"][0], {"properties": "qed,logp", "block_size": 64}),
    "rnn-molecule": ("rnn", DATA["molecule"][0], {"tokenizer": "selfies", "cell": "gru"}),
    "gpt-music": ("gpt", DATA["music"][0], DATA["music"][1]),
    "vae-music": ("vae", DATA["music"][0], {**DATA["music"][1], "sample_mode": "sample"}),
    "vae-molecule": ("vae", DATA["molecule"][0], {}),  # the sequence VAE (tokens)
    "diffusion-music": ("diffusion", DATA["music"][0], DATA["music"][1]),  # absorbing-state grid diffusion
    # tables (the built-in penguins: missing values, mixed types; target species, so conditional)
    "vae-penguins": ("vae", "penguins", {}),
    "gan-penguins": ("gan", "penguins", {}),
    "flow-penguins": ("flow", "penguins", {}),
    "diffusion-penguins": ("diffusion", "penguins", {}),
    "gpt-penguins": ("gpt", "penguins", {}),
}


class Runs:
    """Tiny runs (two training steps) and their fp32 exports, made on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._runs: dict[str, Any] = {}
        self._exports: dict[str, Path] = {}

    def run(self, key: str) -> Any:
        import genlab

        if key not in self._runs:
            family, data, extra = CASES[key]
            genlab.train(family, data, out=self.root / "runs" / key, max_steps=2, batch_size=16, quiet=True,
                         device="cpu", eval_every=0, n_samples=2, **TINY[family], **extra)
            self._runs[key] = genlab.load(self.root / "runs" / key, device="cpu")
        return self._runs[key]

    def export(self, key: str) -> Path:
        from genlab.export.pipeline import export_run

        if key not in self._exports:
            out = self.root / "exports" / key
            out.parent.mkdir(exist_ok=True)
            export_run(self.run(key), out)
            self._exports[key] = out
        return self._exports[key]


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tmp_path_factory.mktemp("export"))
