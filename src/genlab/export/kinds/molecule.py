"""Samples of an exported molecule model (gpt or rnn on SMILES/SELFIES tokens), without torch: the same SMILES,
``.smi`` / ``.csv`` / ``.png`` files and ``--condition`` prompts as :mod:`genlab.modalities.molecule`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genlab.data.molecules import Conditions, decode_molecules, molecule_files
from genlab.errors import ConfigError
from genlab.export.outputs import Writer, load_tokenizer, register_writer, write_bytes


@register_writer("molecule")
class MoleculeWriter(Writer):
    """SMILES of sampled token rows: printed one per line, or written as ``smi`` (with ``.png`` and ``.csv`` beside
    it), ``csv`` (properties) or ``png`` (an RDKit grid)."""

    formats = ("smi", "csv", "png")
    prints = True
    default_samples = 10

    def __init__(self, folder: Path, manifest: Mapping[str, Any]) -> None:
        super().__init__(folder, manifest)
        self.tokenizer = load_tokenizer(folder)
        self.info: Mapping[str, Any] = manifest["spec"].get("info", {})

    def smiles(self, samples: np.ndarray) -> list[str]:
        """The SMILES of each sampled row (as generated: invalid ones too)."""
        return decode_molecules(self.tokenizer, str(self.info.get("notation", "smiles")), samples)

    def show(self, samples: np.ndarray) -> str:
        return "".join(s + "\n" for s in self.smiles(samples))

    def write(self, samples: np.ndarray, path: Path, fmt: str, labels: np.ndarray | None,
              options: Mapping[str, Any]) -> Path:
        for p, blob in molecule_files(self.smiles(samples), path, fmt).items():
            write_bytes(p, blob)
        return path

    def condition_prompt(self, condition: str) -> str:
        """The property-bin prefix of ``condition`` (``qed=0.9,logp=2.5``), as the run's own sampling builds it."""
        conds = self.info.get("conditions")
        if not conds:
            raise ConfigError("this model was trained without --properties; train with e.g. --properties qed,logp "
                              "to sample under a --condition")
        c = Conditions.from_json(conds)
        return c.prompt(c.parse(condition))
