"""Musical metrics of four-part pieces: Yang & Lerch feature distributions, MusPy's pitch and rhythm measures,
voice leading (parallel fifths and octaves with music21, crossing, range), and a Markov-chain baseline for the
token likelihood.

* **Yang & Lerch (2018)** — per piece: pitch-class histogram, pitch range, mean inter-onset interval, note-length
  histogram, mean absolute pitch interval (within each voice). For each feature the pairwise distances inside the
  reference set (intra-set) and between generated and reference pieces (inter-set) are smoothed with a Gaussian
  KDE (Scott's rule); the **overlapping area** (OA, 1 = the same distribution) and **KL**(intra ‖ inter) of the two
  densities say how close the generated set sits to the reference. The same measure with training pieces in place
  of generated ones is the ceiling a model can hope for.
* **MusPy** (Dong et al. 2020) — scale consistency (largest share of notes in one major or natural-minor scale),
  polyphony (mean number of pitches on, over the 16th steps where at least one is), empty-beat rate (beats where no
  note sounds), as MusPy defines them (quarter-note beats).
* **Voice leading** — over the six voice pairs, a *move* goes from one simultaneity to the next (both voices
  sounding, at least one changing pitch); parallel fifths and octaves are the moves music21's
  ``VoiceLeadingQuartet.parallelFifth`` / ``parallelOctave`` call so (antiparallel and octave-displaced included),
  per 1,000 moves; voice crossing is the share of 16th frames (with two or more voices sounding) where a lower voice
  sits above a higher one; out of range is the share of notes outside each voice's usual range.
* **Markov chain** — an interpolated Witten-Bell n-gram on the same event tokens, the baseline of the token NLL.

References:
    Yang & Lerch, "On the evaluation of generative models in music", Neural Computing and Applications, 2018.
    Dong et al., "MusPy: A Toolkit for Symbolic Music Generation", ISMIR 2020, arXiv:2008.01951.
    Witten & Bell, "The zero-frequency problem", IEEE Trans. Inf. Theory, 1991; Chen & Goodman, "An empirical
    study of smoothing techniques for language modeling", 1998.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from genlab.data.music import LETTERS, STEPS_PER_QUARTER, VOICE_RANGES, Piece
from genlab.extras import require

FEATURES = ("pitch_class_histogram", "pitch_range", "inter_onset_interval", "note_length_histogram",
            "pitch_interval")
#: note lengths (16ths) with their own histogram bin: whole, half, quarter, 8th, 16th, dotted half, dotted quarter,
#: dotted 8th (Yang & Lerch's classes that a 16th grid can hold); every other length falls in a last bin
NOTE_LENGTHS = (16, 8, 4, 2, 1, 12, 6, 3)


# -- Yang & Lerch features -------------------------------------------------------------------------

def features(piece: Piece) -> dict[str, np.ndarray]:
    """The Yang & Lerch features of one piece, each a 1-D array (histograms normalised to sum 1)."""
    pitches = piece.pitches()
    pch = np.bincount(pitches % 12, minlength=12).astype(np.float64)
    pch = pch / pch.sum() if pch.sum() else pch
    durs = np.concatenate([v[:, 1] for v in piece.voices])
    nlh = np.array([np.sum(durs == d) for d in NOTE_LENGTHS] + [np.sum(~np.isin(durs, NOTE_LENGTHS))], float)
    nlh = nlh / nlh.sum() if nlh.sum() else nlh
    onsets = np.unique(np.concatenate([v[:, 0] for v in piece.voices]))
    ioi = float(np.diff(onsets).mean()) if len(onsets) > 1 else 0.0
    steps = [np.abs(np.diff(v[:, 2])) for v in piece.voices if len(v) > 1]
    pi = float(np.concatenate(steps).mean()) if steps else 0.0
    pr = float(pitches.max() - pitches.min()) if len(pitches) else 0.0
    return {"pitch_class_histogram": pch, "pitch_range": np.array([pr]), "inter_onset_interval": np.array([ioi]),
            "note_length_histogram": nlh, "pitch_interval": np.array([pi])}


def feature_matrix(pieces: Sequence[Piece]) -> dict[str, np.ndarray]:
    """Every feature of every piece: name → ``(n_pieces, d)``."""
    rows = [features(p) for p in pieces]
    return {k: np.stack([r[k] for r in rows]) for k in FEATURES}


def pairwise(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances: between the rows of ``a`` (each unordered pair once) or between ``a`` and ``b``."""
    if b is None:
        d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
        return d[np.triu_indices(len(a), k=1)]
    return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).reshape(-1)


def kde(samples: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of 1-D ``samples`` at ``points``, bandwidth by Scott's rule ``σ · n^(−1/5)`` (as
    ``scipy.stats.gaussian_kde``); a set without spread gets a bandwidth of 1e-3 of its scale."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    n = len(x)
    sd = float(x.std(ddof=1)) if n > 1 else 0.0
    h = sd * n ** (-1 / 5)
    if h <= 0:
        h = 1e-3 * max(1.0, float(np.abs(x).max()) if n else 1.0)
    z = (np.asarray(points, dtype=np.float64)[:, None] - x[None]) / h
    return np.exp(-0.5 * z * z).sum(1) / (n * h * math.sqrt(2 * math.pi))


def _support(a: np.ndarray, b: np.ndarray, n: int = 2000) -> np.ndarray:
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    pad = 0.25 * (hi - lo) + 1e-3
    return np.linspace(lo - pad, hi + pad, n)


def overlap_area(a: np.ndarray, b: np.ndarray) -> float:
    """Overlapping area ``∫ min(p_a, p_b)`` of the KDE densities of two 1-D samples (1 = identical, 0 = apart)."""
    x = _support(a, b)
    return float(np.trapezoid(np.minimum(kde(a, x), kde(b, x)), x))


def kl_divergence(a: np.ndarray, b: np.ndarray) -> float:
    """``KL(p_a ‖ p_b)`` in nats of the KDE densities of two 1-D samples (densities floored at 1e-10)."""
    x = _support(a, b)
    p, q = np.maximum(kde(a, x), 1e-10), np.maximum(kde(b, x), 1e-10)
    p, q = p / np.trapezoid(p, x), q / np.trapezoid(q, x)
    return float(np.trapezoid(p * np.log(p / q), x))


def relative_measures(generated: Sequence[Piece], reference: Sequence[Piece]) -> dict[str, dict[str, float]]:
    """Per feature: OA and KL between the intra-set distances of ``reference`` and the inter-set distances between
    ``generated`` and ``reference`` (Yang & Lerch's relative measure)."""
    fg, fr = feature_matrix(generated), feature_matrix(reference)
    out = {}
    for k in FEATURES:
        intra, inter = pairwise(fr[k]), pairwise(fg[k], fr[k])
        out[k] = {"oa": overlap_area(intra, inter), "kl": kl_divergence(intra, inter)}
    return out


def yang_lerch(generated: Sequence[Piece], reference: Sequence[Piece], train: Sequence[Piece]) -> dict[str, Any]:
    """Yang & Lerch's OA and KL of generated pieces against held-out ones, beside the same for training pieces
    (the ceiling), their means and ``oa_ratio = mean OA / mean OA of the ceiling``."""
    gen, ceil = relative_measures(generated, reference), relative_measures(train, reference)
    feats = {k: {"oa": gen[k]["oa"], "kl": gen[k]["kl"], "oa_ceiling": ceil[k]["oa"], "kl_ceiling": ceil[k]["kl"]}
             for k in FEATURES}
    mean_oa = float(np.mean([f["oa"] for f in feats.values()]))
    mean_ceil = float(np.mean([f["oa_ceiling"] for f in feats.values()]))
    return {"features": feats, "mean_oa": mean_oa, "mean_kl": float(np.mean([f["kl"] for f in feats.values()])),
            "mean_oa_ceiling": mean_ceil,
            "mean_kl_ceiling": float(np.mean([f["kl_ceiling"] for f in feats.values()])),
            "oa_ratio": mean_oa / mean_ceil if mean_ceil > 0 else float("nan")}


# -- MusPy measures ----------------------------------------------------------------------------------

_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)


def scale_consistency(piece: Piece) -> float:
    """Largest share of notes inside one of the 24 major / natural-minor scales (NaN without notes; MusPy)."""
    pcs = piece.pitches() % 12
    if not len(pcs):
        return float("nan")
    best = 0.0
    for scale in (_MAJOR, _MINOR):
        for root in range(12):
            best = max(best, float(np.roll(scale, root)[pcs].mean()))
    return best


def _pianoroll(piece: Piece) -> np.ndarray:
    end = max([piece.length, *[int((v[:, 0] + v[:, 1]).max()) for v in piece.voices if len(v)]])
    roll = np.zeros((end, 128), bool)
    for v in piece.voices:
        for s, d, p in v.tolist():
            roll[s : s + d, p] = True
    return roll


def polyphony(piece: Piece) -> float:
    """Mean number of pitches on, over the 16th steps where at least one is (NaN without notes; MusPy)."""
    roll = _pianoroll(piece)
    active = int(np.count_nonzero(roll.sum(1) > 0))
    return float(roll.sum() / active) if active else float("nan")


def empty_beat_rate(piece: Piece) -> float:
    """Share of quarter-note beats where no note sounds (MusPy: ``length // beat + 1`` beats, a note marking every
    beat from the one it starts in to the one it ends in; NaN for an empty piece)."""
    ends = [int((v[:, 0] + v[:, 1]).max()) for v in piece.voices if len(v)]
    length = max(ends) if ends else 0
    if length < 1:
        return float("nan")
    res = STEPS_PER_QUARTER
    n_beats = length // res + 1
    full = np.zeros(n_beats, bool)
    for v in piece.voices:
        for s, d, _ in v.tolist():
            full[s // res : (s + d) // res + 1] = True
    return 1.0 - float(full.sum()) / n_beats


# -- voice leading -----------------------------------------------------------------------------------

def _frames(piece: Piece) -> tuple[np.ndarray, np.ndarray]:
    """(pitch sounding or −1, onset) per voice and 16th frame, each ``(4, T)``."""
    t = max([piece.length, *[int((v[:, 0] + v[:, 1]).max()) for v in piece.voices if len(v)]])
    pitch = np.full((len(piece.voices), t), -1, dtype=np.int64)
    onset = np.zeros((len(piece.voices), t), bool)
    for i, v in enumerate(piece.voices):
        for s, d, p in v.tolist():
            pitch[i, s : s + d] = p
            onset[i, s] = True
    return pitch, onset


def voice_pair_moves(piece: Piece) -> list[tuple[int, int, int, int, int, int]]:
    """Every voice-pair move of a piece as ``(upper voice, lower voice, upper before, upper after, lower before,
    lower after)``: between consecutive onsets (of either voice of the pair) at which both voices sound, with at
    least one of them changing pitch."""
    pitch, onset = _frames(piece)
    moves = []
    for i in range(len(pitch)):
        for j in range(i + 1, len(pitch)):
            times = np.flatnonzero(onset[i] | onset[j])
            prev: tuple[int, int] | None = None
            for t in times.tolist():
                a, b = int(pitch[i, t]), int(pitch[j, t])
                if a < 0 or b < 0:
                    prev = None
                    continue
                if prev is not None and (a, b) != prev:
                    moves.append((i, j, prev[0], a, prev[1], b))
                prev = (a, b)
    return moves


def _music21_parallels(candidates: list[tuple[int, int, int, int]]) -> tuple[int, int]:
    """(parallel fifths, parallel octaves) among ``(upper before, upper after, lower before, lower after)`` moves,
    as music21's ``VoiceLeadingQuartet`` judges them."""
    if not candidates:
        return 0, 0
    require("music21", "music", "voice-leading metrics")
    from music21 import note, voiceLeading

    fifths = octaves = 0
    for u0, u1, l0, l1 in candidates:
        q = voiceLeading.VoiceLeadingQuartet(note.Note(midi=u0), note.Note(midi=u1), note.Note(midi=l0),
                                             note.Note(midi=l1))
        fifths += bool(q.parallelFifth())
        octaves += bool(q.parallelOctave())
    return fifths, octaves


def voice_leading(pieces: Sequence[Piece]) -> dict[str, float]:
    """Parallel fifths and octaves per 1,000 voice-pair moves, voice-crossing share of frames and out-of-range
    share of notes over ``pieces`` (pooled).

    A move can only be a parallel fifth or octave when both voices move and the vertical interval is a fifth (mod
    an octave) or a non-unison octave before and after; those candidates go to music21 for the verdict.
    """
    n_moves, candidates = 0, []
    crossed = frames = 0
    out_of_range = notes = 0
    for p in pieces:
        moves = voice_pair_moves(p)
        n_moves += len(moves)
        for _, _, u0, u1, l0, l1 in moves:
            if u0 == u1 or l0 == l1:
                continue
            before, after = abs(u0 - l0), abs(u1 - l1)
            if (before % 12 == 7 and after % 12 == 7) or (before % 12 == 0 < before and after % 12 == 0 < after):
                candidates.append((u0, u1, l0, l1))
        pitch, _ = _frames(p)
        sounding = pitch >= 0
        multi = sounding.sum(0) >= 2
        cross = np.zeros(pitch.shape[1], bool)
        for i in range(len(pitch)):
            for j in range(i + 1, len(pitch)):
                cross |= sounding[i] & sounding[j] & (pitch[i] < pitch[j])
        crossed += int(cross[multi].sum())
        frames += int(multi.sum())
        for v, (lo, hi) in zip(p.voices, VOICE_RANGES, strict=True):
            out_of_range += int(((v[:, 2] < lo) | (v[:, 2] > hi)).sum())
            notes += len(v)
    fifths, octaves = _music21_parallels(candidates)
    per = 1000.0 / n_moves if n_moves else float("nan")
    return {"moves": n_moves, "parallel_fifths": fifths, "parallel_octaves": octaves,
            "fifths_per_1000": fifths * per, "octaves_per_1000": octaves * per,
            "parallels_per_1000": (fifths + octaves) * per,
            "crossing_share": crossed / frames if frames else float("nan"), "frames": frames,
            "out_of_range_share": out_of_range / notes if notes else float("nan"), "notes": notes}


def range_text() -> str:
    """The voice ranges the out-of-range share uses, e.g. ``S 60–81``."""
    return ", ".join(f"{v} {lo}–{hi}" for v, (lo, hi) in zip(LETTERS, VOICE_RANGES, strict=True))


# -- summaries ---------------------------------------------------------------------------------------

def _nanmean(xs: list[float]) -> float:
    arr = np.asarray(xs, dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def piece_measures(pieces: Sequence[Piece]) -> dict[str, float]:
    """Mean scale consistency, polyphony and empty-beat rate (over pieces with notes), and the share of pieces
    without any note."""
    return {"scale_consistency": _nanmean([scale_consistency(p) for p in pieces]),
            "polyphony": _nanmean([polyphony(p) for p in pieces]),
            "empty_beat_rate": _nanmean([empty_beat_rate(p) for p in pieces]),
            "silent_share": float(np.mean([p.n_notes == 0 for p in pieces])) if pieces else float("nan")}


def music_report(generated: Sequence[Piece], reference: Sequence[Piece], train: Sequence[Piece]) -> dict[str, Any]:
    """Everything above for generated pieces, with the same for the held-out ``reference`` pieces (Bach) beside it.

    Arguments:
        generated: the model's pieces (excerpts of the same length as ``reference``).
        reference: held-out excerpts.
        train: training excerpts (the Yang & Lerch ceiling).
    """
    return {"n_generated": len(generated), "n_reference": len(reference),
            "yang_lerch": yang_lerch(generated, reference, train),
            "measures": piece_measures(generated), "measures_bach": piece_measures(reference),
            "voice_leading": voice_leading(generated), "voice_leading_bach": voice_leading(reference)}


# -- Markov-chain baseline ---------------------------------------------------------------------------

class MarkovChain:
    """Interpolated Witten-Bell n-gram model over token ids ``0 … vocab − 1``.

    ``P(w | h) = (c(h, w) + N₁₊(h·) · P(w | h⁻)) / (c(h) + N₁₊(h·))`` with ``h⁻`` the history without its oldest
    token, down to the unigram interpolated with the uniform distribution; a history never seen falls back to
    ``P(w | h⁻)``. Histories before the start of a sequence are the start token 0.

    References:
        Witten & Bell, 1991; Chen & Goodman, 1998 (Sec. 2.5).
    """

    def __init__(self, order: int, vocab: int) -> None:
        if order < 1 or vocab ** order >= 2**62:
            raise ValueError(f"order must be 1..{int(math.log(2**62) / math.log(vocab))}, got {order}")
        self.order, self.vocab = order, vocab
        self.tables: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def _keys(self, seq: np.ndarray, k: int) -> np.ndarray:
        """History keys of length ``k`` before every position of ``seq`` (start padded with 0)."""
        padded = np.concatenate([np.zeros(k, dtype=np.int64), seq.astype(np.int64)])
        key = np.zeros(len(seq), dtype=np.int64)
        for i in range(k):
            key = key * self.vocab + padded[i : i + len(seq)]
        return key

    def fit(self, stream: np.ndarray) -> MarkovChain:
        """Count n-grams of one token stream."""
        x = np.asarray(stream, dtype=np.int64)
        self.unigram = np.bincount(x, minlength=self.vocab).astype(np.float64)
        self.tables = []
        for k in range(1, self.order):
            h = self._keys(x, k)
            joint, c_joint = np.unique(h * self.vocab + x, return_counts=True)
            hist, c_hist = np.unique(h, return_counts=True)
            joint_hist = joint // self.vocab
            types = np.unique(joint_hist, return_counts=True)[1]  # N1+(h·), aligned with ``hist``
            self.tables.append((joint, c_joint.astype(np.float64), hist, c_hist.astype(np.float64),
                                types.astype(np.float64)))
        return self

    @staticmethod
    def _lookup(keys: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(table, keys).clip(0, max(len(table) - 1, 0))
        hit = table[pos] == keys if len(table) else np.zeros(len(keys), bool)
        return np.where(hit, values[pos] if len(table) else 0.0, 0.0)

    def prob(self, seq: np.ndarray) -> np.ndarray:
        """``P(x_t | x_{t-n+1} … x_{t-1})`` of every token of ``seq`` (a sequence started by the start token)."""
        x = np.asarray(seq, dtype=np.int64)
        n_types = float(np.count_nonzero(self.unigram))
        p = (self.unigram[x] + n_types / self.vocab) / (self.unigram.sum() + n_types)
        for k, (joint, c_joint, hist, c_hist, types) in enumerate(self.tables, start=1):
            h = self._keys(x, k)
            c_hw = self._lookup(h * self.vocab + x, joint, c_joint)
            c_h = self._lookup(h, hist, c_hist)
            n1 = self._lookup(h, hist, types)
            p = np.where(c_h > 0, (c_hw + n1 * p) / np.maximum(c_h + n1, 1e-12), p)
        return p

    def nll(self, windows: np.ndarray) -> np.ndarray:
        """Negative log-likelihood in nats of every token of each window ``(N, T)``, each modelled from the start
        token → ``(N, T)``."""
        return np.stack([-np.log(self.prob(w)) for w in np.asarray(windows)])


def markov_baseline(train_stream: np.ndarray, windows: np.ndarray, vocab: int, frames: int,
                    orders: Sequence[int] = (1, 2, 3, 4, 5)) -> dict[str, Any]:
    """Held-out NLL per token and per 16th frame of Markov chains of several orders on the same tokens; ``best`` is
    the order with the lowest NLL (the strongest baseline).

    Arguments:
        train_stream: the training token stream.
        windows: held-out token windows ``(N, T)``.
        vocab: vocabulary size.
        frames: 16th frames the windows cover.
    """
    out: dict[str, Any] = {"orders": {}}
    tokens = int(np.asarray(windows).size)
    for n in orders:
        total = float(MarkovChain(n, vocab).fit(train_stream).nll(windows).sum())
        out["orders"][str(n)] = {"nll_per_token": total / tokens, "nll_per_frame": total / max(frames, 1)}
    best = min(out["orders"], key=lambda k: out["orders"][k]["nll_per_token"])
    out.update(best=int(best), **out["orders"][best])
    return out
