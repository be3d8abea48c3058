"""Musical metrics against hand-computed values, scipy's KDE, closed forms and music21 itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genlab.data.music import Piece
from genlab.metrics import music as mm


def piece(*voices, length=16):
    return Piece(tuple(np.asarray(v, dtype=np.int64).reshape(-1, 3) for v in voices), length, "p")


CHORD = piece([(0, 4, 67), (4, 4, 67), (8, 8, 69)], [(0, 16, 64)], [(0, 4, 60), (8, 8, 60)],
              [(0, 8, 48), (8, 8, 48)])


def test_yang_lerch_features_hand_computed():
    f = mm.features(CHORD)
    assert np.allclose(f["pitch_class_histogram"], np.array([4, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0]) / 8)
    assert f["pitch_range"].tolist() == [21.0]
    assert f["inter_onset_interval"].tolist() == [4.0]  # distinct onsets 0, 4, 8
    assert np.allclose(f["note_length_histogram"], np.array([1, 4, 3, 0, 0, 0, 0, 0, 0]) / 8)
    assert f["pitch_interval"].tolist() == [0.5]  # |steps| within voices: 0, 2 | 0 | 0


def test_muspy_measures_hand_computed():
    assert mm.scale_consistency(CHORD) == 1.0
    chromatic = piece([(0, 4, 60), (4, 4, 61), (8, 4, 62), (12, 4, 63)], [], [], [])
    assert mm.scale_consistency(chromatic) == 0.75  # C minor or C# major hold 3 of the 4
    assert mm.polyphony(CHORD) == 60 / 16  # 4 voices, 3 while the tenor rests
    assert mm.polyphony(piece([(0, 4, 60)], [(0, 4, 60)], [], [])) == 1.0  # a unison is one pitch
    assert mm.empty_beat_rate(CHORD) == 0.0
    gap = piece([(0, 4, 60), (12, 4, 60)], [], [], [])
    assert mm.empty_beat_rate(gap) == pytest.approx(1 / 5)  # MusPy: 16 // 4 + 1 beats, beat 2 empty
    empty = piece([], [], [], [])
    assert math.isnan(mm.scale_consistency(empty)) and math.isnan(mm.polyphony(empty))


def test_kde_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, pts = rng.normal(size=60), np.linspace(-4, 4, 50)
    assert np.allclose(mm.kde(x, pts), stats.gaussian_kde(x)(pts), rtol=1e-10, atol=1e-12)


def test_overlap_area_and_kl_closed_forms():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 4000), rng.normal(1, 1, 4000)
    # N(0, 1) vs N(1, 1): OA = 2 Φ(-1/2) = 0.617, KL = 1/2 (KDE smoothing widens both a little)
    assert mm.overlap_area(a, b) == pytest.approx(0.617, abs=0.02)
    assert mm.kl_divergence(a, b) == pytest.approx(0.5, abs=0.06)
    assert mm.overlap_area(a, a) == pytest.approx(1.0, abs=1e-3) and abs(mm.kl_divergence(a, a)) < 1e-6
    assert mm.overlap_area(a, a + 50) < 1e-6


def test_relative_measures_prefer_the_same_distribution():
    rng = np.random.default_rng(1)

    def random_piece(spread):
        return piece(*[[(4 * k, 4, int(60 + rng.integers(-spread, spread + 1))) for k in range(4)] for _ in range(4)])

    ref = [random_piece(3) for _ in range(30)]
    same = mm.yang_lerch([random_piece(3) for _ in range(30)], ref, [random_piece(3) for _ in range(30)])
    wild = mm.yang_lerch([random_piece(12) for _ in range(30)], ref, [random_piece(3) for _ in range(30)])
    assert same["mean_oa"] > wild["mean_oa"] + 0.2
    assert 0 < wild["oa_ratio"] < same["oa_ratio"]


def test_voice_leading_counts_parallels_crossing_range():
    pytest.importorskip("music21")
    # soprano C5-D5 over bass F3-G3: a compound parallel fifth; alto and tenor hold
    fifths = piece([(0, 4, 72), (4, 4, 74)], [(0, 8, 64)], [(0, 8, 60)], [(0, 4, 53), (4, 4, 55)], length=8)
    assert len(mm.voice_pair_moves(fifths)) == 5  # every pair but alto-tenor moves once
    vl = mm.voice_leading([fifths])
    assert (vl["moves"], vl["parallel_fifths"], vl["parallel_octaves"]) == (5, 1, 0)
    assert vl["fifths_per_1000"] == 200.0 and vl["crossing_share"] == 0.0 and vl["out_of_range_share"] == 0.0
    octaves = piece([(0, 4, 72), (4, 4, 74)], [(0, 4, 67), (4, 4, 62)], [], [(0, 4, 60), (4, 4, 62)], length=8)
    vl = mm.voice_leading([octaves])
    assert vl["parallel_octaves"] == 1 and vl["parallel_fifths"] == 0  # S-B octaves; A-B 7 -> unison is not
    crossed = piece([(0, 8, 60)], [(0, 4, 55), (4, 4, 64)], [], [(0, 8, 30)], length=8)
    vl = mm.voice_leading([crossed])
    assert vl["crossing_share"] == 0.5 and vl["out_of_range_share"] == pytest.approx(1 / 4)  # bass 30 < 40


def test_parallel_prefilter_agrees_with_music21_on_random_moves():
    pytest.importorskip("music21")
    from music21 import note, voiceLeading

    rng = np.random.default_rng(0)
    ours = theirs = 0
    for _ in range(400):
        lo = int(rng.integers(48, 60))
        u0, l0 = lo + int(rng.choice([7, 12, 19, 24, 5, 0])), lo
        u1, l1 = u0 + int(rng.integers(-3, 4)), l0 + int(rng.integers(-3, 4))
        p = piece([(0, 4, u0), (4, 4, u1)], [], [], [(0, 4, l0), (4, 4, l1)], length=8)
        vl = mm.voice_leading([p])
        ours += vl["parallel_fifths"] + vl["parallel_octaves"]
        if (u0, l0) != (u1, l1):
            q = voiceLeading.VoiceLeadingQuartet(*(note.Note(midi=m) for m in (u0, u1, l0, l1)))
            theirs += bool(q.parallelFifth()) + bool(q.parallelOctave())
    assert ours == theirs and ours > 20


def test_markov_chain_hand_computed_and_normalised():
    stream = np.array([0, 1, 1, 2])
    one = mm.MarkovChain(1, 4).fit(stream)
    assert np.allclose(one.prob(np.array([1, 3])), [2.75 / 7, 0.75 / 7])  # (c + N1/V) / (N + N1)
    two = mm.MarkovChain(2, 4).fit(stream)
    p1 = 2.75 / 7
    assert two.prob(np.array([1]))[0] == pytest.approx((1 + 2 * p1) / 4)  # history <start> = 0: c=2, N1+=2
    three = mm.MarkovChain(3, 4).fit(np.random.default_rng(0).integers(0, 4, 300))
    for h in ([0, 0], [1, 2], [3, 3]):
        total = sum(three.prob(np.array([*h, w]))[-1] for w in range(4))
        assert total == pytest.approx(1.0)


def test_markov_baseline_prefers_the_right_order():
    rng = np.random.default_rng(0)
    seq = np.tile(np.array([1, 2, 3, 4, 5, 6]), 200)  # deterministic given the previous token
    noise = rng.integers(1, 7, 1200)
    res = mm.markov_baseline(seq, seq[:600].reshape(10, 60), 7, frames=600, orders=(1, 2, 3))
    assert res["best"] >= 2 and res["nll_per_token"] < 0.1 < res["orders"]["1"]["nll_per_token"]
    flat = mm.markov_baseline(noise, noise[:600].reshape(10, 60), 7, frames=300, orders=(1,))
    assert flat["nll_per_token"] == pytest.approx(math.log(6), abs=0.05)
    assert flat["nll_per_frame"] == pytest.approx(2 * flat["nll_per_token"])
