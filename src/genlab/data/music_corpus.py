"""Collections of four-part music: finding the files, parsing them once (cached), splitting them by tune, cutting
excerpts, and the training dataset of SATB grid windows.

The parse of a collection is cached under ``$GENLAB_CACHE/music`` (default ``~/.cache/genlab/music``), keyed by
the files' paths, sizes and times and the parser version, so the ~100 s music21 takes for the 350 chorale files is
paid once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.checkpoint import write_bytes
from genlab.core import DataSpec
from genlab.data import ArrayDataset, seeded_generator
from genlab.data.music import HIGH, LOW, MUSIC_SUFFIXES, Parsed, Piece, parse_file, to_grid
from genlab.errors import DataError

#: bump when parsing changes, so cached parses are redone
PARSE_VERSION = 1


@dataclass(frozen=True)
class MusicSource:
    """Music files to read: their paths, where they come from, and whether their names are BWV numbers."""

    files: tuple[Path, ...]
    source: str
    bwv: bool = False


def bwv_key(name: str) -> tuple[float, ...]:
    """``bach/bwv10.7`` → ``(10, 7)``; names without a number sort last."""
    stem = Path(name).name.removesuffix(".mxl").removeprefix("bwv")
    parts = []
    for piece in stem.replace("-", ".").split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(float(digits) if digits else 0.0)
    return tuple(parts) if parts and parts[0] else (math.inf,)


# -- reading and caching -----------------------------------------------------------------------------

def cache_root() -> Path:
    """Folder of cached parses: ``$GENLAB_CACHE/music`` or ``~/.cache/genlab/music``."""
    return Path(os.environ.get("GENLAB_CACHE", Path.home() / ".cache" / "genlab")) / "music"


def find_music(data: str) -> MusicSource:
    """The files ``--data`` names: a built-in dataset, a music file, or a folder of them.

    Raises:
        DataError: for a missing path or a folder without music files.
    """
    from genlab.core import DATASETS

    if data in DATASETS:
        src = DATASETS[data]()
        if not isinstance(src, MusicSource):
            raise DataError(f"'{data}' is not music data")
        return src
    p = Path(data).expanduser()
    if not p.exists():
        raise DataError(f"path {data} does not exist; give chorales, a MIDI/MusicXML file or a folder of them")
    if p.is_file():
        if p.suffix.lower() not in MUSIC_SUFFIXES:
            raise DataError(f"{p.name} is not a MIDI or MusicXML file ({', '.join(MUSIC_SUFFIXES)})")
        return MusicSource((p,), str(p))
    files = tuple(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MUSIC_SUFFIXES))
    if not files:
        raise DataError(f"folder {p} has no MIDI or MusicXML files ({', '.join(MUSIC_SUFFIXES)})")
    return MusicSource(files, str(p))


def _store(pieces: list[Piece]) -> dict[str, np.ndarray]:
    rows = [np.concatenate([np.full((len(v), 1), k), np.full((len(v), 1), i), v], axis=1)
            for k, p in enumerate(pieces) for i, v in enumerate(p.voices)]
    notes = np.concatenate(rows) if rows else np.zeros((0, 5), dtype=np.int64)
    return {"notes": notes.astype(np.int64), "length": np.array([p.length for p in pieces], dtype=np.int64),
            "bpb": np.array([p.beats_per_bar for p in pieces], dtype=np.int64)}


def digest(pieces: Sequence[Piece]) -> str:
    """A short hash of the pieces' notes, names and lengths (what derived caches depend on)."""
    h = hashlib.blake2b(digest_size=8)
    for k, v in _store(list(pieces)).items():
        h.update(k.encode() + v.tobytes())
    h.update(json.dumps([p.name for p in pieces]).encode())
    return h.hexdigest()


def _restore(arrays: Mapping[str, np.ndarray], names: Sequence[str]) -> list[Piece]:
    notes = arrays["notes"]
    out = []
    for k, name in enumerate(names):
        mine = notes[notes[:, 0] == k]
        voices = tuple(mine[mine[:, 1] == i][:, 2:] for i in range(4))
        out.append(Piece(voices, int(arrays["length"][k]), name, int(arrays["bpb"][k])))
    return out


@dataclass
class Corpus:
    """The four-part pieces of a source, in source order, and what was skipped (reason → file names)."""

    pieces: list[Piece]
    skipped: dict[str, list[str]] = field(default_factory=dict)
    dropped_notes: int = 0


def read_corpus(src: MusicSource, limit: int | None = None, progress: Callable[[int, int], None] | None = None
                ) -> Corpus:
    """Parse (or read from the cache) the files of ``src``: four-part pieces, and the other files counted by reason.

    Raises:
        DataError: when no file holds four voices.
    """
    files = src.files[:limit] if limit else src.files
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.blake2b(json.dumps([PARSE_VERSION, LOW, HIGH, stats]).encode(), digest_size=12).hexdigest()
    path = cache_root() / f"{key}.npz"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        with np.load(path) as arrays:
            return Corpus(_restore(arrays, meta["names"]), meta["skipped"], meta["dropped"])
    pieces: list[Piece] = []
    skipped: dict[str, list[str]] = {}
    dropped = 0
    for i, f in enumerate(files):
        try:
            res: Parsed = parse_file(f)
        except DataError as e:
            skipped.setdefault("unreadable", []).append(f"{f.name} ({e})")
            continue
        if res.piece is None:
            skipped.setdefault(res.why, []).append(f.name)
        elif res.piece.n_notes == 0:
            skipped.setdefault("has no notes", []).append(f.name)
        else:
            pieces.append(Piece(res.piece.voices, res.piece.length, f.stem, res.piece.beats_per_bar))
            dropped += res.dropped
        if progress is not None:
            progress(i + 1, len(files))
    if not pieces:
        why = "; ".join(f"{len(v)} {k}" for k, v in skipped.items())
        raise DataError(f"{src.source} has no four-part piece ({why})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **_store(pieces))  # type: ignore[arg-type]
    os.replace(tmp, path)
    write_bytes(meta_path, json.dumps({"names": [p.name for p in pieces], "skipped": skipped,
                                       "dropped": dropped}).encode())
    return Corpus(pieces, skipped, dropped)


def tune_signature(piece: Piece, n: int = 12) -> tuple[int, ...]:
    """The first ``n`` intervals of the soprano sampled at quarter-note beats (repeats merged): a tune's
    fingerprint that survives transposition, passing notes and a different bass."""
    sop = piece.voices[0]
    if not len(sop):
        return ()
    beats = []
    for s, d, p in sop.tolist():
        for t in range(s, s + d):
            if t % 4 == 0:
                beats.append(p)
    merged = [b for k, b in enumerate(beats) if k == 0 or b != beats[k - 1]]
    return tuple(np.diff(merged[: n + 1]).tolist())


def split_groups(pieces: Sequence[Piece], bwv: bool) -> list[int]:
    """Group index of every piece: chorales sharing a tune (same :func:`tune_signature`) share a group; user files
    are their own groups. Groups are numbered in the order of their first piece."""
    if not bwv:
        return list(range(len(pieces)))
    first: dict[tuple[int, ...], int] = {}
    groups = []
    for k, p in enumerate(pieces):
        sig = tune_signature(p)
        key = sig if len(sig) >= 8 else (k,)  # too short a melody to fingerprint: its own group
        groups.append(first.setdefault(key, len(first)))
    return groups


def split_pieces(pieces: Sequence[Piece], bwv: bool, test_fraction: float) -> tuple[list[Piece], list[Piece]]:
    """(train, test): every ``round(1 / test_fraction)``-th group (1-based) is test.

    Raises:
        DataError: when one side would be empty.
    """
    groups = split_groups(pieces, bwv)
    k = max(2, round(1 / test_fraction))
    n_groups = max(groups) + 1
    test_groups = {g for g in range(n_groups) if g % k == k - 1} or {n_groups - 1}
    train = [p for p, g in zip(pieces, groups, strict=True) if g not in test_groups]
    test = [p for p, g in zip(pieces, groups, strict=True) if g in test_groups]
    if not train or not test:
        raise DataError(f"{len(pieces)} four-part piece{'s' if len(pieces) != 1 else ''} cannot be split into train "
                        "and test; give at least two")
    return train, test


def excerpts(pieces: Sequence[Piece], length: int) -> list[Piece]:
    """The non-overlapping ``length``-16th excerpts of each piece (a shorter piece: once, padded with rests)."""
    out = []
    for p in pieces:
        if p.length <= length:
            out.append(p.crop(0, length))
            continue
        out += [p.crop(s, length) for s in range(0, p.length - length + 1, length)]
    return out


# -- the grid dataset --------------------------------------------------------------------------------

class GridDataset:
    """Training windows of the SATB grid: random beat-aligned crops of the training pieces, each transposed by one
    of its allowed shifts drawn per window. ``x`` holds the untransposed non-overlapping windows (for evaluation).

    Arguments:
        pieces: training pieces.
        spec: ``DataSpec(kind="music", shape=(4, length), form="grid", levels=LEVELS)``.
        shifts: allowed transpositions of each piece.
    """

    augment: Any = None

    def __init__(self, pieces: Sequence[Piece], spec: DataSpec, shifts: Sequence[Sequence[int]]) -> None:
        self.spec, self.length = spec, spec.shape[1]
        self.pieces, self.shifts = list(pieces), [list(s) for s in shifts]
        self.grids = [to_grid(p, max(p.length, self.length)) for p in self.pieces]
        self.starts = np.array([max(1, (g.shape[1] - self.length) // 4 + 1) for g in self.grids])  # crops per piece
        self.offsets = np.concatenate([[0], np.cumsum(self.starts)])
        self._x = torch.from_numpy(np.stack([to_grid(e) for e in excerpts(self.pieces, self.length)]))

    @property
    def x(self) -> Tensor:
        return self._x

    @property
    def y(self) -> Tensor | None:
        return None

    def __len__(self) -> int:
        return int(self._x.shape[0])

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, int(self.offsets[-1]) // batch_size)

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, None]:
        """``batch_size`` windows: a uniformly drawn beat-aligned crop, transposed by a uniformly drawn allowed
        shift (a function of seed and step only)."""
        g = seeded_generator("music-grid", seed, step)
        idx = torch.randint(0, int(self.offsets[-1]), (batch_size,), generator=g).numpy()
        pick = torch.rand(batch_size, generator=g).numpy()
        out = np.zeros((batch_size, 4, self.length), dtype=np.int64)
        for b, i in enumerate(idx):
            k = int(np.searchsorted(self.offsets, i, side="right") - 1)
            start = 4 * int(i - self.offsets[k])
            w = self.grids[k][:, start : start + self.length]
            shift = self.shifts[k][int(pick[b] * len(self.shifts[k]))]
            out[b, :, : w.shape[1]] = np.where(w > 0, w + 2 * shift, 0)
        return torch.from_numpy(out), None

    def head(self, n: int) -> ArrayDataset:
        return ArrayDataset(self._x[:n], None, self.spec)


