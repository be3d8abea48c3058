"""Four-part music: one parser, two representations (an SATB grid on 16th notes and an event-token sequence).

A :class:`Piece` is four monophonic voices (soprano, alto, tenor, bass), each an array of notes
``(start, duration, pitch)`` with times in 16th notes and MIDI pitches. From it come

* the **grid** ``int64 (4, T)``: one cell per voice and 16th step holding ``0`` (rest), ``onset(p) = 1 + 2·(p −
  LOW)`` (a note of pitch ``p`` starts here) or ``hold(p) = 2 + 2·(p − LOW)`` (it goes on), so ``1 + 2·(HIGH − LOW +
  1)`` levels (Coconet's piano roll with DeepBach's hold symbol, the pitch kept in the hold so each cell can be
  read on its own);
* the **event tokens**: at every time a note starts, for the voices S, A, T, B in that order, a ``voice+pitch``
  token and a ``duration`` token; then ``shift k`` tokens move time to the next onset (or the end of the piece).
  This is a lossless, canonical encoding of the same grid (rests are the gaps), so nats per 16th frame of a token
  model and of a grid model measure the same information.

Pitches are MIDI numbers in ``LOW..HIGH`` (C2..C6); notes outside are dropped and counted. Parsing reads MusicXML
(and ``.mxl``/``.krn`` …) with music21 and MIDI with pretty_midi, both imported only when a file is parsed.

References:
    Huang et al., "Counterpoint by Convolution" (Coconet), 2017, arXiv:1903.07227.
    Hadjeres et al., "DeepBach", 2017, arXiv:1612.01010.
    Liang et al., "Automatic Stylistic Composition of Bach Chorales with Deep LSTM" (BachBot), ISMIR 2017.
    Oore et al., "This Time with Feeling", 2018, arXiv:1808.03715 (event-based performance tokens).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genlab.errors import DataError
from genlab.extras import require

VOICES = ("soprano", "alto", "tenor", "bass")
LETTERS = "SATB"
#: lowest and highest MIDI pitch of the grid and the tokens (C2 … C6)
LOW, HIGH = 36, 84
N_PITCH = HIGH - LOW + 1
#: grid levels: rest, then (onset, hold) per pitch
LEVELS = 1 + 2 * N_PITCH
STEPS_PER_QUARTER = 4
#: longest duration token (16ths: four whole notes); longer notes are split into repeated onsets
MAX_DURATION = 64
#: longest time-shift token (16ths); longer gaps take several
MAX_SHIFT = 16
#: the usual ranges of the four voices (MIDI), for the out-of-range metric: S C4–A5, A F3–D5, T C3–A4, B E2–D4
VOICE_RANGES = ((60, 81), (53, 74), (48, 69), (40, 62))
MUSIC_SUFFIXES = (".mid", ".midi", ".musicxml", ".xml", ".mxl", ".krn")
MIDI_SUFFIXES = (".mid", ".midi")


def _notes(rows: Any = ()) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


@dataclass(frozen=True)
class Piece:
    """Four voices of notes on a 16th-note grid.

    Arguments:
        voices: one ``int64 (n, 3)`` array per voice (S, A, T, B): ``start``, ``duration`` (16ths, ≥ 1), ``pitch``
            (MIDI); sorted by start, notes of one voice never overlap.
        length: duration of the piece in 16ths (≥ the end of its last note).
        name: where it came from (e.g. ``bwv269``).
        beats_per_bar: quarter-note beats per bar (from the time signature; 4 when unknown).
    """

    voices: tuple[np.ndarray, ...]
    length: int
    name: str = ""
    beats_per_bar: int = 4

    @property
    def n_notes(self) -> int:
        return sum(len(v) for v in self.voices)

    def pitches(self) -> np.ndarray:
        """Every note's pitch, all voices."""
        return np.concatenate([v[:, 2] for v in self.voices]) if self.voices else np.zeros(0, dtype=np.int64)

    def transpose(self, k: int) -> Piece:
        """The piece ``k`` semitones higher."""
        return dataclasses.replace(self, voices=tuple(v + np.array([0, 0, k]) for v in self.voices))

    def crop(self, start: int, length: int) -> Piece:
        """The 16ths ``start … start + length`` (notes cut at the edges; a note started before keeps sounding)."""
        out = []
        for v in self.voices:
            s, e = v[:, 0], v[:, 0] + v[:, 1]
            keep = (e > start) & (s < start + length)
            w = v[keep].copy()
            ns = np.maximum(w[:, 0], start)
            ne = np.minimum(w[:, 0] + w[:, 1], start + length)
            w[:, 0], w[:, 1] = ns - start, ne - ns
            out.append(w)
        return dataclasses.replace(self, voices=tuple(out), length=length)

    def range_of(self, voice: int) -> tuple[int, int] | None:
        """(lowest, highest) pitch of one voice, None when it has no notes."""
        v = self.voices[voice]
        return (int(v[:, 2].min()), int(v[:, 2].max())) if len(v) else None


def concat(pieces: Sequence[Piece], gap: int = 0) -> Piece:
    """Pieces one after another, ``gap`` 16ths of silence between them."""
    out: list[list[np.ndarray]] = [[] for _ in VOICES]
    t = 0
    for p in pieces:
        for i, v in enumerate(p.voices):
            out[i].append(v + np.array([t, 0, 0]))
        t += p.length + gap
    total = max(0, t - gap) if pieces else 0
    return Piece(tuple(np.concatenate(o) if o else _notes() for o in out), total,
                 "+".join(p.name for p in pieces), pieces[0].beats_per_bar if pieces else 4)


def clean_voice(notes: list[tuple[int, int, int]]) -> tuple[np.ndarray, int]:
    """Sort one voice's ``(start, duration, pitch)`` notes, keep the highest of notes starting together and cut a
    note that overlaps the next one. Returns the notes and how many were dropped."""
    notes = sorted(notes, key=lambda n: (n[0], -n[2]))
    out: list[list[int]] = []
    dropped = 0
    for s, d, p in notes:
        if d < 1:
            dropped += 1
            continue
        if out and out[-1][0] == s:  # a chord in one voice: keep its top note
            dropped += 1
            continue
        if out and out[-1][0] + out[-1][1] > s:
            out[-1][1] = s - out[-1][0]
        out.append([s, d, p])
    return _notes(out), dropped


# -- parsing ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parsed:
    """A parsed file: the piece (None when the file has no four voices) and what was adjusted or why it failed."""

    piece: Piece | None
    voices: int
    dropped: int = 0
    why: str = ""


def _why(e: Exception) -> str:
    """The first line of an exception's message (its type when it has none), at most 120 characters."""
    return (str(e).splitlines()[0] if str(e).strip() else type(e).__name__)[:120]


def _quantize(q: float) -> int:
    """Quarter-note time → 16ths."""
    return round(float(q) * STEPS_PER_QUARTER)


def piece_from_score(score: Any, name: str) -> Parsed:
    """A four-part :class:`Piece` from a music21 score: four parts (or voices split into parts), ties merged, the
    top note of a chord inside one voice, times rounded to 16ths, pitches outside ``LOW..HIGH`` dropped."""
    parts = list(score.parts) if hasattr(score, "parts") else []
    if len(parts) != 4:
        try:
            exploded = score.voicesToParts()
            if len(exploded.parts) == 4:
                parts = list(exploded.parts)
        except Exception:
            pass
    if len(parts) != 4:
        return Parsed(None, len(parts), why=f"has {len(parts)} voice{'s' if len(parts) != 1 else ''}, not four")
    voices, dropped, end = [], 0, 0
    for part in parts:
        rows = []
        for n in part.stripTies().flatten().notes:
            pitches = [p.midi for p in n.pitches]
            s, d = _quantize(n.offset), _quantize(n.offset + n.quarterLength) - _quantize(n.offset)
            p = max(pitches)
            if not LOW <= p <= HIGH:
                dropped += 1
                continue
            rows.append((s, d, p))
            end = max(end, s + d)
        v, k = clean_voice(rows)
        voices.append(v)
        dropped += k
        end = max(end, _quantize(part.flatten().highestTime))
    if not sum(len(v) for v in voices):
        return Parsed(None, 4, why="has no notes")
    bpb = 4
    ts = list(score.recurse().getElementsByClass("TimeSignature"))
    if ts:
        bpb = max(1, round(float(ts[0].barDuration.quarterLength)))
    return Parsed(Piece(tuple(voices), end, name, bpb), 4, dropped)


def piece_from_midi(path: Path) -> Parsed:
    """A four-part :class:`Piece` from a MIDI file: its four non-drum tracks with notes, ordered from the highest to
    the lowest mean pitch, times in 16ths of the file's own beats.

    Raises:
        DataError: when the file is not a readable MIDI file.
    """
    pretty_midi = require("pretty_midi", "music", "reading MIDI files")
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as e:
        raise DataError(f"{path.name} is not a readable MIDI file ({_why(e)})") from None
    tracks = [ins for ins in pm.instruments if not ins.is_drum and ins.notes]
    if not tracks:
        return Parsed(None, 0, why="has no notes")
    if len(tracks) != 4:
        return Parsed(None, len(tracks), why=f"has {len(tracks)} voice{'s' if len(tracks) != 1 else ''}, not four")
    tracks.sort(key=lambda ins: -float(np.mean([n.pitch for n in ins.notes])))
    res = pm.resolution
    voices, dropped, end = [], 0, 0
    for ins in tracks:
        rows = []
        for n in ins.notes:
            s = _quantize(pm.time_to_tick(n.start) / res)
            stop = _quantize(pm.time_to_tick(n.end) / res)
            if not LOW <= n.pitch <= HIGH:
                dropped += 1
                continue
            rows.append((s, stop - s, int(n.pitch)))
            end = max(end, stop)
        v, k = clean_voice(rows)
        voices.append(v)
        dropped += k
    ts = pm.time_signature_changes
    bpb = max(1, round(ts[0].numerator * 4 / ts[0].denominator)) if ts else 4
    return Parsed(Piece(tuple(voices), end, path.stem, bpb), 4, dropped)


def read_score(path: Path) -> Any:
    """A music21 score of a MusicXML/``.mxl``/kern file.

    Raises:
        DataError: when music21 cannot read it.
    """
    music21 = require("music21", "music", "reading MusicXML files")
    try:
        return music21.converter.parse(str(path))
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path.name} is not a readable music file ({msg[:120]})") from None


def parse_file(path: Path) -> Parsed:
    """Parse a MIDI or MusicXML file into a four-part piece (see :class:`Parsed` for files that are not).

    Raises:
        DataError: for a file that cannot be read at all.
    """
    if path.suffix.lower() in MIDI_SUFFIXES:
        return piece_from_midi(path)
    return piece_from_score(read_score(path), path.stem)


def melody_from_file(path: Path) -> Piece:
    """The melody (soprano) of a file: its one voice, or the highest of several (a four-part file's soprano).

    Raises:
        DataError: for an unreadable file, one without notes, or a melody with chords.
    """
    if path.suffix.lower() in MIDI_SUFFIXES:
        pretty_midi = require("pretty_midi", "music", "reading MIDI files")
        try:
            pm = pretty_midi.PrettyMIDI(str(path))
        except Exception as e:
            raise DataError(f"{path.name} is not a readable MIDI file ({_why(e)})") from None
        tracks = [ins for ins in pm.instruments if not ins.is_drum and ins.notes]
        if not tracks:
            raise DataError(f"{path.name} has no notes")
        top = max(tracks, key=lambda ins: float(np.mean([n.pitch for n in ins.notes])))
        res = pm.resolution
        rows = [(_quantize(pm.time_to_tick(n.start) / res), _quantize(pm.time_to_tick(n.end) / res), int(n.pitch))
                for n in top.notes]
        rows = [(s, e - s, p) for s, e, p in rows]
    else:
        score = read_score(path)
        parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
        first = parts[0]
        rows = []
        for n in first.stripTies().flatten().notes:
            s = _quantize(n.offset)
            rows.append((s, _quantize(n.offset + n.quarterLength) - s, max(p.midi for p in n.pitches)))
            if len(n.pitches) > 1:
                raise DataError(f"{path.name}: the melody has chords (at quarter {float(n.offset):g}); give one voice")
    if not rows:
        raise DataError(f"{path.name} has no notes")
    starts = sorted(s for s, _, _ in rows)
    if len(set(starts)) < len(starts):
        raise DataError(f"{path.name}: the melody has chords (notes starting together); give one voice")
    v, _ = clean_voice(rows)
    end = int((v[:, 0] + v[:, 1]).max())
    return Piece((v, _notes(), _notes(), _notes()), end, path.stem)


# -- the grid ----------------------------------------------------------------------------------------

def onset_code(pitch: Any) -> Any:
    return 1 + 2 * (np.asarray(pitch) - LOW)


def to_grid(piece: Piece, length: int | None = None) -> np.ndarray:
    """The ``int64 (4, T)`` grid of a piece (``T = length`` or the piece's length; notes past it are cut)."""
    t = piece.length if length is None else length
    g = np.zeros((len(VOICES), t), dtype=np.int64)
    for i, v in enumerate(piece.voices):
        for s, d, p in v.tolist():
            if s >= t:
                continue
            code = 1 + 2 * (p - LOW)
            g[i, s] = code
            g[i, s + 1 : min(s + d, t)] = code + 1
    return g


def grid_pitch(grid: np.ndarray) -> np.ndarray:
    """Pitch sounding in every cell (−1 for a rest)."""
    g = np.asarray(grid)
    return np.where(g > 0, LOW + (g - 1) // 2, -1)


def from_grid(grid: np.ndarray, name: str = "") -> Piece:
    """The piece of a grid ``(4, T)``: a note starts at an onset cell, or where the pitch changes or a rest ends;
    it goes on over hold cells of the same pitch (so any grid a model makes reads as music)."""
    g = np.asarray(grid, dtype=np.int64)
    if g.ndim != 2 or g.shape[0] != len(VOICES):
        raise DataError(f"a music grid has shape (4, T), got {tuple(g.shape)}")
    g = g.clip(0, LEVELS - 1)
    pitch = grid_pitch(g)
    onset = (g > 0) & (g % 2 == 1)
    voices = []
    t = g.shape[1]
    for i in range(len(VOICES)):
        prev = np.concatenate([[-1], pitch[i, :-1]])
        starts = np.flatnonzero((pitch[i] >= 0) & (onset[i] | (pitch[i] != prev)))
        rows = []
        for k, s in enumerate(starts):
            nxt = starts[k + 1] if k + 1 < len(starts) else t
            e = s + 1
            while e < nxt and pitch[i, e] == pitch[i, s]:
                e += 1
            rows.append((int(s), int(e - s), int(pitch[i, s])))
        voices.append(_notes(rows))
    return Piece(tuple(voices), t, name)


# -- event tokens --------------------------------------------------------------------------------------

class EventVocab:
    """The event vocabulary: id 0 is ``<|endoftext|>`` (start/separator), then ``voice+pitch`` tokens (S36 … B84),
    durations ``d1 … d64`` and time shifts ``t1 … t16`` (16ths).

    Token ids ``k ≥ 1`` map to the private-use characters ``U+E000 + k − 1``, so genlab's character tokenizer
    (:class:`genlab.data.tokens.Tokenizer`) and its cached token streams carry music unchanged.
    """

    #: first id of each token group
    voice_pitch = 1
    duration = 1 + 4 * N_PITCH
    shift = 1 + 4 * N_PITCH + MAX_DURATION

    def __init__(self) -> None:
        vp = [f"{v}{p}" for v in LETTERS for p in range(LOW, HIGH + 1)]
        self.names = ("<|endoftext|>", *vp, *(f"d{d}" for d in range(1, MAX_DURATION + 1)),
                      *(f"t{k}" for k in range(1, MAX_SHIFT + 1)))

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def chars(self) -> str:
        """The character alphabet of the tokenizer (``chars[k − 1]`` is token ``k``)."""
        return "".join(chr(0xE000 + k) for k in range(self.size - 1))

    def text(self, ids: Any) -> str:
        """Token ids (≥ 1) as the tokenizer's characters."""
        return "".join(chr(0xE000 + int(k) - 1) for k in np.asarray(ids).reshape(-1))

    def encode(self, piece: Piece) -> np.ndarray:
        """The canonical event ids of a piece (without the leading ``<|endoftext|>``)."""
        events: dict[int, list[tuple[int, int, int]]] = {}
        for i, v in enumerate(piece.voices):
            for s, d, p in v.tolist():
                while d > 0:  # a note longer than the longest duration token: repeated onsets
                    step = min(d, MAX_DURATION)
                    events.setdefault(s, []).append((i, p, step))
                    s, d = s + step, d - step
        out: list[int] = []
        times = sorted(events)
        for k, t in enumerate(times):
            for i, p, d in sorted(events[t]):
                out += [self.voice_pitch + i * N_PITCH + (p - LOW), self.duration + d - 1]
            nxt = times[k + 1] if k + 1 < len(times) else max(piece.length, t)
            gap = nxt - t
            while gap > 0:
                step = min(gap, MAX_SHIFT)
                out.append(self.shift + step - 1)
                gap -= step
        if not times and piece.length:
            out += [self.shift + MAX_SHIFT - 1] * (piece.length // MAX_SHIFT)
            if piece.length % MAX_SHIFT:
                out.append(self.shift + piece.length % MAX_SHIFT - 1)
        return np.asarray(out, dtype=np.int64)

    def frames(self, ids: Any) -> int:
        """16th frames the time-shift tokens among ``ids`` advance."""
        a = np.asarray(ids).reshape(-1)
        sh = a[(a >= self.shift) & (a < self.size)]
        return int((sh - self.shift + 1).sum())

    def decode(self, ids: Any, name: str = "") -> tuple[Piece, int]:
        """The piece of event ids, up to the first ``<|endoftext|>`` after some music, and the number of tokens
        that broke the grammar and were skipped (a duration without a note, a note without a duration). A note
        starting while the same voice still sounds cuts the earlier one."""
        notes: list[list[tuple[int, int, int]]] = [[] for _ in VOICES]
        t, errors, pending = 0, 0, None
        seen = False
        for k in np.asarray(ids).reshape(-1).tolist():
            if k == 0:
                if seen:
                    break
                continue
            seen = True
            if self.voice_pitch <= k < self.duration:
                errors += pending is not None
                pending = divmod(k - self.voice_pitch, N_PITCH)
            elif self.duration <= k < self.shift:
                if pending is None:
                    errors += 1
                    continue
                v, p = pending
                notes[v].append((t, k - self.duration + 1, LOW + p))
                pending = None
            elif self.shift <= k < self.size:
                errors += pending is not None
                pending = None
                t += k - self.shift + 1
            else:
                errors += 1
        errors += pending is not None
        voices = []
        for rows in notes:
            v, _ = clean_voice(rows)
            voices.append(v)
        end = max([t, *[int((v[:, 0] + v[:, 1]).max()) for v in voices if len(v)]])
        return Piece(tuple(voices), end, name), errors


VOCAB = EventVocab()


def voice_envelope(pieces: Sequence[Piece]) -> list[tuple[int, int]]:
    """(lowest, highest) pitch of each voice over ``pieces``."""
    out = []
    for i in range(len(VOICES)):
        ps = [v for p in pieces if len(v := p.voices[i])]
        out.append((int(min(v[:, 2].min() for v in ps)), int(max(v[:, 2].max() for v in ps))) if ps else (LOW, HIGH))
    return out


def transpositions(piece: Piece, envelope: Sequence[tuple[int, int]], max_shift: int) -> list[int]:
    """Semitone shifts in ``−max_shift … max_shift`` that keep every voice of ``piece`` inside ``envelope``."""
    out = []
    for k in range(-max_shift, max_shift + 1):
        ok = True
        for i, (lo, hi) in enumerate(envelope):
            r = piece.range_of(i)
            if r is not None and (r[0] + k < lo or r[1] + k > hi):
                ok = False
                break
        if ok:
            out.append(k)
    return out or [0]


def pitch_name(p: int) -> str:
    """``60`` → ``C4``."""
    return ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")[p % 12] + str(p // 12 - 1)
