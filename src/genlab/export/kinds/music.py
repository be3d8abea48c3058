"""Samples of an exported music model (event tokens or SATB grids), without torch: the same MIDI, MusicXML, WAV and
piano-roll files as :mod:`genlab.modalities.music` (:func:`genlab.report.music.write_pieces`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genlab.data.music import VOCAB, Piece, from_grid
from genlab.export.outputs import Writer, register_writer
from genlab.report.music import FILE_FORMATS, MusicOutputOptions, write_pieces


@register_writer("music")
class MusicWriter(Writer):
    """Pieces as a folder (``.mid``, ``.musicxml``, ``.wav`` and ``.png`` per piece: an existing folder or a path
    without a suffix), or one file of every piece in a row; ``npz`` keeps the raw samples."""

    formats = (*FILE_FORMATS, "npz", "folder")
    options_cls = MusicOutputOptions
    default_samples = 8

    def format_of(self, path: Path, fmt: str | None) -> str:
        if fmt is None and (path.is_dir() or not path.suffix):
            return "folder"
        return super().format_of(path, fmt)

    def pieces(self, samples: np.ndarray) -> list[Piece]:
        """Samples (grids ``(n, 4, T)`` or event tokens ``(n, L)``) as pieces."""
        if self.manifest["form"] == "grid":
            return [from_grid(g, f"sample-{i:03d}") for i, g in enumerate(samples)]
        return [VOCAB.decode(row, f"sample-{i:03d}")[0] for i, row in enumerate(samples)]

    def write(self, samples: np.ndarray, path: Path, fmt: str, labels: np.ndarray | None,
              options: Mapping[str, Any]) -> Path:
        if fmt == "npz":
            return super().write(samples, path, fmt, labels, options)
        return write_pieces(self.pieces(samples), path, fmt, options)
