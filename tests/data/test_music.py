"""The music parser and its two representations: the SATB grid and the event tokens (round trips, robustness)."""

from __future__ import annotations

import numpy as np
import pytest

from genlab.data.music import (
    HIGH,
    LEVELS,
    LOW,
    VOCAB,
    Piece,
    clean_voice,
    concat,
    from_grid,
    melody_from_file,
    parse_file,
    to_grid,
    transpositions,
    voice_envelope,
)
from genlab.errors import DataError


def piece(*voices, length=16, name="p"):
    return Piece(tuple(np.asarray(v, dtype=np.int64).reshape(-1, 3) for v in voices), length, name)


#: soprano G4 G4 | A4 (held), alto E4, tenor C4 with a rest, bass C3 C3
CHORD = piece([(0, 4, 67), (4, 4, 67), (8, 8, 69)], [(0, 16, 64)], [(0, 4, 60), (8, 8, 60)],
              [(0, 8, 48), (8, 8, 48)])


def test_grid_cells_hand_computed():
    g = to_grid(CHORD)
    assert g.shape == (4, 16) and g.dtype == np.int64 and g.max() < LEVELS
    on = 1 + 2 * (67 - LOW)
    assert g[0, :5].tolist() == [on, on + 1, on + 1, on + 1, on]  # repeated G4: a new onset at step 4
    assert g[2, 4:8].tolist() == [0, 0, 0, 0]  # the tenor's rest
    assert (g[1, 1:] == 1 + 2 * (64 - LOW) + 1).all()


def test_grid_round_trip_and_robust_decoding():
    assert np.array_equal(to_grid(from_grid(to_grid(CHORD))), to_grid(CHORD))
    odd = np.zeros((4, 6), dtype=np.int64)
    odd[0] = [0, 2 + 2 * 10, 2 + 2 * 10, 2 + 2 * 11, 0, 1]  # holds without onsets, a pitch change inside a hold
    p = from_grid(odd)
    assert p.voices[0].tolist() == [[1, 2, LOW + 10], [3, 1, LOW + 11], [5, 1, LOW]]
    with pytest.raises(DataError):
        from_grid(np.zeros((3, 4)))


def test_event_tokens_are_canonical_and_lossless():
    ids = VOCAB.encode(CHORD)
    names = [VOCAB.names[i] for i in ids]
    assert names[:9] == ["S67", "d4", "A64", "d16", "T60", "d4", "B48", "d8", "t4"]
    assert names[-1] == "t8" and VOCAB.frames(ids) == 16
    back, errors = VOCAB.decode(ids)
    assert errors == 0 and np.array_equal(to_grid(back, 16), to_grid(CHORD))
    assert VOCAB.size == 1 + 4 * (HIGH - LOW + 1) + 64 + 16
    assert len(VOCAB.chars) == VOCAB.size - 1 and VOCAB.text(ids[:1]) == chr(0xE000 + ids[0] - 1)


def test_token_decoding_counts_grammar_errors_and_cuts_overlaps():
    d = VOCAB.duration
    s60, a60 = VOCAB.voice_pitch + (60 - LOW), VOCAB.voice_pitch + (HIGH - LOW + 1) + (60 - LOW)
    ids = [d + 3, s60, d + 7, VOCAB.shift + 1, s60, d + 3, a60, 0, s60, d]
    p, errors = VOCAB.decode([0, *ids])
    assert errors == 2  # a duration without a note, a note without a duration
    assert p.voices[0].tolist() == [[0, 2, 60], [2, 4, 60]]  # the second onset cut the first (8 -> 2)
    assert len(p.voices[1]) == 0 and p.length == 6  # decoding stopped at <|endoftext|>


def test_long_notes_split_and_empty_piece():
    long = piece([(0, 80, 60)], [], [], [], length=80)
    assert [VOCAB.names[i] for i in VOCAB.encode(long)][:4] == ["S60", "d64", "t16", "t16"]
    assert VOCAB.frames(VOCAB.encode(piece([], [], [], [], length=20))) == 20


def test_clean_voice_keeps_top_note_and_cuts_overlaps():
    v, dropped = clean_voice([(0, 4, 60), (0, 4, 64), (2, 4, 62), (6, 0, 50)])
    assert v.tolist() == [[0, 2, 64], [2, 4, 62]] and dropped == 2


def test_transpose_crop_concat_envelope():
    assert CHORD.transpose(2).voices[0][:, 2].tolist() == [69, 69, 71]
    c = CHORD.crop(6, 4)
    assert c.length == 4 and c.voices[0].tolist() == [[0, 2, 67], [2, 2, 69]]
    both = concat([CHORD, CHORD], gap=4)
    assert both.length == 36 and both.voices[3][-1].tolist() == [28, 8, 48]
    env = voice_envelope([CHORD])
    assert env == [(67, 69), (64, 64), (60, 60), (48, 48)]
    assert transpositions(CHORD, [(60, 72), (60, 70), (55, 65), (40, 50)], 6) == [-4, -3, -2, -1, 0, 1, 2]
    assert transpositions(CHORD, env, 6) == [0]


@pytest.fixture()
def midi_files(tmp_path):
    pytest.importorskip("pretty_midi")
    from genlab.report.music import midi_bytes

    four = tmp_path / "four.mid"
    four.write_bytes(midi_bytes(CHORD))
    one = tmp_path / "one.mid"
    one.write_bytes(midi_bytes(piece([(0, 4, 72), (4, 4, 74)], [], [], [], length=8)))
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd not really a midi file")
    return four, one, bad


def test_midi_round_trip_and_bad_files(midi_files):
    four, one, bad = midi_files
    res = parse_file(four)
    assert res.piece is not None and np.array_equal(to_grid(res.piece, 16), to_grid(CHORD))
    assert parse_file(one).piece is None and "1 voice" in parse_file(one).why
    with pytest.raises(DataError, match="not a readable MIDI file"):
        parse_file(bad)
    assert melody_from_file(one).voices[0].tolist() == [[0, 4, 72], [4, 4, 74]]
    assert melody_from_file(four).voices[0][:, 2].tolist() == [67, 67, 69]  # the soprano of a four-part file


def test_musicxml_round_trip(tmp_path):
    pytest.importorskip("music21")
    from genlab.report.music import musicxml_bytes

    path = tmp_path / "p.musicxml"
    path.write_bytes(musicxml_bytes(CHORD))
    res = parse_file(path)
    assert res.piece is not None and np.array_equal(to_grid(res.piece, 16), to_grid(CHORD))
