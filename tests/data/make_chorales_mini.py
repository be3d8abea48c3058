"""Write tests/data/chorales-mini/: the first 192 16ths (12 bars of 4/4) of the first eight four-part chorales of
music21's corpus (BWV order) as four-track MIDI files, the small music dataset of the test suite.

    PYTHONPATH=src python tests/data/make_chorales_mini.py
"""

from __future__ import annotations

from pathlib import Path

from genlab.data.music_corpus import read_corpus
from genlab.modalities.music import chorales
from genlab.report.music import midi_bytes

OUT = Path(__file__).resolve().parent / "chorales-mini"


def main() -> None:
    corpus = read_corpus(chorales(), limit=10)
    OUT.mkdir(exist_ok=True)
    for p in corpus.pieces[:8]:
        (OUT / f"{p.name}.mid").write_bytes(midi_bytes(p.crop(0, 192)))
        print(p.name)


if __name__ == "__main__":
    main()
