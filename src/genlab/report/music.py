"""Four-part pieces as files you can hear and read: MIDI, MusicXML, WAV and a piano-roll PNG.

* MIDI: pretty_midi, one instrument per voice (General MIDI ``program``), at ``tempo`` quarter notes per minute.
* MusicXML: music21, four parts (treble, treble, treble-8vb and bass clefs), ties across bar lines made by
  music21.
* WAV: the ``fluidsynth`` program with the General MIDI sound font that ships inside the pretty_midi wheel
  (``TimGM6mb.sf2``) when ``fluidsynth`` is on the PATH; otherwise pretty_midi's own sine-wave synthesiser. 16-bit
  mono.
* Piano roll: one coloured bar per note (soprano red, alto orange, tenor green, bass blue), bar lines in gray.

:func:`write_pieces` writes samples as these files (a folder of them per piece, or one file of every piece in a row);
this module imports no torch, so exported music models write the same files.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genlab.config import check
from genlab.data.music import LETTERS, VOICES, Piece, concat
from genlab.errors import ConfigError
from genlab.extras import require
from genlab.files import write_bytes

#: soprano, alto, tenor, bass
COLORS = ((214, 39, 40), (255, 127, 14), (44, 160, 44), (31, 119, 180))
DEFAULT_TEMPO = 80.0
DEFAULT_PROGRAM = 19  # General MIDI church organ


def midi_object(piece: Piece, tempo: float = DEFAULT_TEMPO, program: int = DEFAULT_PROGRAM) -> Any:
    """A ``pretty_midi.PrettyMIDI`` of the piece: one instrument per voice."""
    pretty_midi = require("pretty_midi", "music", "writing MIDI")
    pm = pretty_midi.PrettyMIDI(initial_tempo=float(tempo))
    sec = 60.0 / float(tempo) / 4  # seconds per 16th
    for name, notes in zip(VOICES, piece.voices, strict=True):
        ins = pretty_midi.Instrument(program=int(program), name=name.capitalize())
        for s, d, p in notes.tolist():
            ins.notes.append(pretty_midi.Note(velocity=80, pitch=int(p), start=s * sec, end=(s + d) * sec))
        pm.instruments.append(ins)
    return pm


def midi_bytes(piece: Piece, tempo: float = DEFAULT_TEMPO, program: int = DEFAULT_PROGRAM) -> bytes:
    """A type-1 MIDI file of the piece."""
    buf = io.BytesIO()
    midi_object(piece, tempo, program).write(buf)
    return buf.getvalue()


def musicxml_bytes(piece: Piece, title: str = "") -> bytes:
    """A MusicXML score of the piece (four parts, time signature of ``beats_per_bar`` quarters)."""
    require("music21", "music", "writing MusicXML")
    from music21 import clef, metadata, meter, note, stream
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    score = stream.Score()
    score.metadata = metadata.Metadata(title=title or piece.name or "genlab chorale")
    clefs = (clef.TrebleClef, clef.TrebleClef, clef.Treble8vbClef, clef.BassClef)
    for i, (name, notes) in enumerate(zip(VOICES, piece.voices, strict=True)):
        part = stream.Part(id=LETTERS[i])
        part.partName = name.capitalize()
        part.insert(0, clefs[i]())
        part.insert(0, meter.TimeSignature(f"{piece.beats_per_bar}/4"))
        t = 0
        for s, d, p in notes.tolist():
            if s > t:
                part.append(note.Rest(quarterLength=(s - t) / 4))
            n = note.Note(midi=int(p))
            n.quarterLength = d / 4
            part.append(n)
            t = s + d
        if t < piece.length:
            part.append(note.Rest(quarterLength=(piece.length - t) / 4))
        score.insert(0, part)
    return bytes(GeneralObjectExporter(score).parse())


def sound_font() -> Path | None:
    """The General MIDI sound font inside the pretty_midi wheel, if it is there."""
    try:
        import pretty_midi
    except ImportError:
        return None
    p = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return p if p.is_file() else None


def synthesizer() -> str:
    """What renders WAV here: ``fluidsynth`` (the program, with the pretty_midi GM sound font) or ``sine``."""
    return "fluidsynth" if shutil.which("fluidsynth") and sound_font() is not None else "sine"


def _wav(samples: np.ndarray, rate: int) -> bytes:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def audio(piece: Piece, rate: int = 22050, tempo: float = DEFAULT_TEMPO, program: int = DEFAULT_PROGRAM
          ) -> np.ndarray:
    """The piece as mono audio samples in [-1, 1] (see :func:`synthesizer`)."""
    pm = midi_object(piece, tempo, program)
    sf2 = sound_font()
    if synthesizer() == "fluidsynth" and sf2 is not None:
        with tempfile.TemporaryDirectory() as tmp:
            mid, out = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
            pm.write(str(mid))
            res = subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(rate), "-T", "wav", "-F",
                                  str(out), str(sf2), str(mid)], capture_output=True, timeout=300, check=False)
            if res.returncode == 0 and out.is_file():
                with wave.open(str(out), "rb") as w:
                    ch, width, frames = w.getnchannels(), w.getsampwidth(), w.readframes(w.getnframes())
                if width == 2:
                    x = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768
                    x = x.reshape(-1, ch).mean(1) if ch > 1 else x
                    return x
    x = pm.synthesize(fs=rate) if pm.get_end_time() > 0 else np.zeros(rate // 10)
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return (x / peak * 0.8 if peak > 0 else x).astype(np.float32)


def wav_bytes(piece: Piece, rate: int = 22050, tempo: float = DEFAULT_TEMPO, program: int = DEFAULT_PROGRAM) -> bytes:
    """A 16-bit mono WAV file of the piece."""
    return _wav(audio(piece, rate, tempo, program), rate)


def pianoroll_png(pieces: list[Piece], px_step: int = 4, px_pitch: int = 3) -> bytes:
    """A PNG of stacked piano rolls, one per piece (time →, pitch ↑), voices in their colours."""
    from PIL import Image, ImageDraw

    lo, hi = 36, 84
    for p in pieces:
        ps = p.pitches()
        if len(ps):
            lo, hi = min(lo, int(ps.min())), max(hi, int(ps.max()))
    rows = hi - lo + 1
    width = max([p.length for p in pieces] + [16]) * px_step + 2
    panel = rows * px_pitch + 6
    img = Image.new("RGB", (width, panel * max(1, len(pieces))), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for k, p in enumerate(pieces):
        top = k * panel
        for c in range(lo, hi + 1):
            if c % 12 == 0:  # every C
                y = top + 3 + (hi - c) * px_pitch
                draw.line([(0, y + px_pitch - 1), (width, y + px_pitch - 1)], fill=(235, 235, 235))
        for b in range(0, p.length + 1, 4 * p.beats_per_bar):
            draw.line([(1 + b * px_step, top), (1 + b * px_step, top + panel - 4)], fill=(200, 200, 200))
        for color, notes in zip(COLORS, p.voices, strict=True):
            for s, d, q in notes.tolist():
                y = top + 3 + (hi - q) * px_pitch
                draw.rectangle([1 + s * px_step, y, 1 + (s + d) * px_step - 2, y + px_pitch - 1], fill=color)
        if k:
            draw.line([(0, top), (width, top)], fill=(120, 120, 120))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# -- sample files ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MusicOutputOptions:
    """Options of music sample files.

    Arguments:
        tempo: quarter notes per minute of the MIDI and audio.
        program: General MIDI program of every voice (19 church organ, 0 piano, 52 choir aahs, 48 strings).
    """

    tempo: float = 80.0
    program: int = 19

    def __post_init__(self) -> None:
        check(20 <= self.tempo <= 300, f"--tempo must be between 20 and 300, got {self.tempo}")
        check(0 <= self.program <= 127, f"--program must be a General MIDI program 0..127, got {self.program}")


FILE_FORMATS = ("mid", "musicxml", "wav", "png")


def write_pieces(pieces: Sequence[Piece], path: Path, fmt: str, options: Mapping[str, Any] | None = None) -> Path:
    """Write pieces: into a folder (``.mid``, ``.musicxml``, ``.wav``, ``.png`` per piece, written to a temporary
    folder and moved into place when ``path`` does not exist yet), or as one file of every piece in a row."""
    opts = dict(options or {})
    tempo, program = float(opts.get("tempo", 80.0)), int(opts.get("program", 19))

    writers: dict[str, Callable[[Piece], bytes]] = {
        "mid": lambda p: midi_bytes(p, tempo, program), "musicxml": musicxml_bytes,
        "wav": lambda p: wav_bytes(p, tempo=tempo, program=program), "png": lambda p: pianoroll_png([p])}

    def blob(p: Piece, kind: str) -> bytes:
        if kind not in writers:
            raise ConfigError(f"--format must be one of {', '.join(FILE_FORMATS)}, npz or a folder, got {kind}")
        return writers[kind](p)

    if fmt != "folder":
        if fmt == "png":
            write_bytes(path, pianoroll_png(list(pieces)))
        else:
            write_bytes(path, blob(concat(list(pieces), gap=16), fmt))
        return path
    fresh = not path.exists()
    target = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent)) if fresh else path
    try:
        for p in pieces:
            for kind in FILE_FORMATS:
                write_bytes(target / f"{p.name}.{kind}", blob(p, kind))
        if fresh:
            os.replace(target, path)
    except BaseException:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return path

