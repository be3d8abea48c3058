"""Music: four-part chorales as event tokens (``gpt``, ``rnn``) or as an SATB grid on 16th notes (``vae``,
``diffusion``); samples you can hear (MIDI, MusicXML, WAV, piano roll); harmonising a given melody (grid
inpainting); NLL per token and per 16th frame and the field's musical metrics.

Data
----
* ``chorales`` — the Bach chorales in music21's corpus (371 Riemenschneider entries, 350 distinct files), the
  four-part ones (332; 305 train, 27 test). Split by BWV number, never putting two harmonisations of one tune on
  both sides: pieces whose soprano melodies open alike (first 12 pitch intervals at quarter-note beats) form one
  group; groups are ordered by their lowest BWV number and every ``round(1 / test_fraction)``-th group is held out.
* a folder (or one file) of MIDI / MusicXML: four voices each (four tracks, or four parts / voices); other files are
  skipped and counted; every k-th file in name order is held out.

Parsing is :mod:`genlab.data.music` (cached under ``$GENLAB_CACHE/music``). Training pieces are transposed by
every shift up to ``--max-transpose`` semitones that keeps each voice inside the range it has in the data
(token runs: all of them in the training stream; grid runs: one drawn per training window). Test pieces are not
transposed.

Forms
-----
* ``tokens``: windows of ``--block-size`` event tokens (:class:`genlab.data.tokens.TokenDataset` over a cached
  stream; ``<|endoftext|>`` between pieces).
* ``grid``: ``int64 (4, --length)`` windows; training windows are random crops at beat positions, test windows the
  non-overlapping crops of each test piece (a piece shorter than a window is padded with rests).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from genlab.checkpoint import write_bytes
from genlab.config import check
from genlab.core import DataSpec, register_dataset
from genlab.data import ArrayDataset
from genlab.data.music import (
    HIGH,
    LETTERS,
    LEVELS,
    LOW,
    MUSIC_SUFFIXES,
    VOCAB,
    Piece,
    concat,
    from_grid,
    melody_from_file,
    parse_file,
    pitch_name,
    to_grid,
    transpositions,
    voice_envelope,
)
from genlab.data.music_corpus import (
    GridDataset,
    MusicSource,
    bwv_key,
    digest,
    excerpts,
    find_music,
    read_corpus,
    split_pieces,
)
from genlab.data.tokens import Tokenizer, token_streams
from genlab.errors import ConfigError, DataError
from genlab.extras import require
from genlab.modalities.base import (
    Column,
    Evaluation,
    Modality,
    Progress,
    Splits,
    fmt,
    likelihood_rows,
    register_modality,
)
from genlab.report.music import MusicOutputOptions, write_pieces

if TYPE_CHECKING:
    from genlab.data import Dataset
    from genlab.run import Run

#: MusicXML/MIDI the chorale loader reads from music21's corpus
CORPUS = "music21 corpus: Bach chorales (Riemenschneider numbering)"


@register_dataset("chorales", kind="music")
def chorales() -> MusicSource:
    """J. S. Bach's four-part chorales from music21's corpus, split by BWV number (no tune on both sides)."""
    require("music21", "music", "the chorales dataset")
    from music21 import corpus
    from music21.corpus import chorales as m21

    files = []
    for name in sorted(set(m21.Iterator(returnType="filename")), key=bwv_key):
        found = corpus.getWork(name)
        paths = found if isinstance(found, list) else [found]
        exact = [Path(p) for p in paths if Path(p).stem == Path(name).name]
        files.append(exact[0] if exact else Path(paths[0]))
    return MusicSource(tuple(files), CORPUS, bwv=True)


@dataclass(frozen=True)
class MusicDataConfig:
    """How to read four-part music and present it to a family.

    Arguments:
        data: ``chorales`` (built in), a folder of MIDI/MusicXML files, or one such file.
        length: grid window in 16th notes (grid families), and the excerpt length the musical metrics compare
            (every family).
        block_size: event tokens per training window (token families; the model's context).
        max_transpose: augment training pieces by every transposition up to this many semitones that keeps each
            voice inside its range in the data (0 = off).
        test_fraction: share of pieces (chorales: of tune groups) held out.
        pieces: read only the first N files (BWV order for the chorales, name order for a folder).
    """

    data: str = "chorales"
    length: int = 64
    block_size: int = 256
    max_transpose: int = 6
    test_fraction: float = 0.1
    pieces: int | None = None

    def __post_init__(self) -> None:
        check(4 <= self.length <= 1024 and self.length % 4 == 0,
              f"--length must be a multiple of 4 between 4 and 1024 (16ths), got {self.length}")
        check(8 <= self.block_size <= 16384, f"--block-size must be between 8 and 16384, got {self.block_size}")
        check(0 <= self.max_transpose <= 12, f"--max-transpose must be in 0..12, got {self.max_transpose}")
        check(0 < self.test_fraction < 1, f"--test-fraction must be in (0, 1), got {self.test_fraction}")
        check(self.pieces is None or self.pieces >= 2, "--pieces must be at least 2 (files to read)")


# -- loading -----------------------------------------------------------------------------------------

def load_music(cfg: MusicDataConfig, form: str) -> Splits:
    """Read, split and encode music as ``cfg`` says, in ``form`` (``tokens`` or ``grid``).

    Raises:
        DataError: for missing or unusable data.
    """
    src = find_music(cfg.data)
    corpus = read_corpus(src, cfg.pieces)
    train, test = split_pieces(corpus.pieces, src.bwv, cfg.test_fraction)
    envelope = voice_envelope(train)
    shifts = [transpositions(p, envelope, cfg.max_transpose) for p in train] if cfg.max_transpose else \
        [[0] for _ in train]
    frames = sum(p.length for p in train)
    info: dict[str, Any] = {"representation": "events" if form == "tokens" else "grid", "low": LOW, "high": HIGH,
                            "envelope": [list(e) for e in envelope], "length": cfg.length, "vocab": VOCAB.size}
    prep: dict[str, Any] = {"source": src.source, "n_train_pieces": len(train), "n_test_pieces": len(test),
                            "test_pieces": [p.name for p in test], "skipped": {k: len(v) for k, v in
                                                                               corpus.skipped.items()},
                            "dropped_notes": corpus.dropped_notes, "voice_envelope": info["envelope"],
                            "transpositions": sum(len(s) for s in shifts), "train_frames": frames}
    if form == "grid":
        spec = DataSpec(kind="music", shape=(4, cfg.length), form="grid", levels=LEVELS, info=info)
        train_ds = GridDataset(train, spec, shifts)
        test_x = torch.from_numpy(np.stack([to_grid(e) for e in excerpts(test, cfg.length)]))
        prep.update(n_train=len(train_ds), n_test=len(test_x))
        return Splits(train_ds, ArrayDataset(test_x, None, spec), prep)
    if form != "tokens":
        raise DataError(f"music comes as tokens or grid, not {form}")
    ids = [VOCAB.encode(p) for p in train]
    info["tokens_per_frame"] = sum(len(i) for i in ids) / max(frames, 1)
    key = json.dumps(["music-events", 1, digest(corpus.pieces), cfg.test_fraction, cfg.max_transpose, src.source,
                      VOCAB.size])
    tok = Tokenizer("char", chars=VOCAB.chars)

    def train_texts() -> Any:
        for p, s in zip(train, shifts, strict=True):
            for k in s:
                yield VOCAB.text(VOCAB.encode(p.transpose(k)))

    def test_texts() -> Any:
        for p in test:
            yield VOCAB.text(VOCAB.encode(p))

    spec = DataSpec(kind="music", shape=(cfg.block_size,), form="tokens", levels=VOCAB.size, info=info)
    tr, te, meta = token_streams(key, lambda: tok, train_texts, test_texts, spec, src.source)
    if len(te) == 0:
        raise DataError(f"the held-out pieces have {len(te.stream)} tokens, fewer than one window of "
                        f"{cfg.block_size}; lower --block-size")
    prep.update(n_train=len(tr), n_test=len(te), train_tokens=meta["train_tokens"], test_tokens=meta["val_tokens"],
                cache=meta["cache"])
    return Splits(tr, te, prep)


# -- options -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MusicEvalOptions:
    """Options of ``genlab eval`` on music runs.

    Arguments:
        samples: pieces drawn for the musical metrics (0 = likelihood only).
        markov: highest order of the Markov-chain baseline on the same tokens (token runs; 0 = off).
    """

    samples: int = 100
    markov: int = 5

    def __post_init__(self) -> None:
        check(self.samples == 0 or self.samples >= 2, f"--samples must be 0 (skip) or at least 2, got {self.samples}")
        check(0 <= self.markov <= 6, f"--markov must be in 0..6, got {self.markov}")


# -- the modality ------------------------------------------------------------------------------------

def _parse_voices(spec: str | None) -> tuple[list[int], tuple[int, int] | None]:
    """``ATB`` or ``ATB:0-32`` (16ths, end exclusive) → voice indices to fill and an optional time range.

    Raises:
        ConfigError: for an unknown voice letter or a bad range.
    """
    text = (spec or "ATB").strip().upper().replace(",", "")
    letters, _, span = text.partition(":")
    bad = [c for c in letters if c not in LETTERS]
    if bad or not letters:
        raise ConfigError(f"bad voices {spec!r}: use letters of SATB, e.g. ATB, optionally :START-END in 16ths")
    rng = None
    if span:
        try:
            a, b = (int(v) for v in span.split("-"))
        except ValueError:
            raise ConfigError(f"bad time range {span!r}; write START-END in 16ths, e.g. ATB:0-32") from None
        if not 0 <= a < b:
            raise ConfigError(f"time range {span} must satisfy 0 <= START < END")
        rng = (a, b)
    return sorted({LETTERS.index(c) for c in letters}), rng


@register_modality("music")
class MusicModality(Modality):
    """Four-part music: event tokens ``int64 (N, block_size)`` or SATB grids ``int64 (N, 4, length)``."""

    config_cls = MusicDataConfig
    forms = ("tokens", "grid")
    capabilities = frozenset({"inpaint"})
    sample_formats = ("mid", "musicxml", "wav", "png", "npz")
    default_samples = 8
    eval_options_cls = MusicEvalOptions
    output_options_cls = MusicOutputOptions
    eval_keys = ("likelihood", "nll_per_frame", "music")

    def load(self, cfg: Any, form: str) -> Splits:
        return load_music(cfg, form)

    def claims(self, path: Path) -> int:
        if path.is_file():
            return 2 if path.suffix.lower() in MUSIC_SUFFIXES else 0
        if path.is_dir():
            return 2 if any(p.suffix.lower() in MUSIC_SUFFIXES for p in path.rglob("*") if p.is_file()) else 0
        return 0

    # -- samples -----------------------------------------------------------------------------------
    def pieces(self, run: Run, samples: Tensor) -> list[Piece]:
        """Samples (grids or event tokens) as pieces."""
        x = torch.as_tensor(samples).cpu().numpy()
        if run.spec.form == "grid":
            return [from_grid(g, f"sample-{i:03d}") for i, g in enumerate(x)]
        return [VOCAB.decode(row, f"sample-{i:03d}")[0] for i, row in enumerate(x)]

    def sample_format(self, path: Path, fmt: str | None) -> str:
        """A folder (an existing one, or a path without a suffix) gets ``.mid``, ``.musicxml``, ``.wav`` and
        ``.png`` per piece; a file one of :attr:`sample_formats` (all pieces one after another)."""
        if fmt is None and (path.is_dir() or not path.suffix):
            return "folder"
        if fmt == "folder":
            return fmt
        return super().sample_format(path, fmt)

    def write_samples(self, run: Run, samples: Tensor, path: Path, fmt: str, labels: Tensor | None = None,
                      options: Mapping[str, Any] | None = None) -> Path:
        pieces = self.pieces(run, samples)
        if fmt == "npz":
            import io

            buf = io.BytesIO()
            np.savez(buf, x=torch.as_tensor(samples).numpy())
            write_bytes(path, buf.getvalue())
            return path
        return write_pieces(pieces, path, fmt, options)

    def render(self, run: Run, samples: Tensor) -> tuple[str, bytes]:
        """The first four pieces one after another (a bar of rest between) as a 16 kHz WAV."""
        from genlab.report.music import wav_bytes

        pieces = self.pieces(run, samples[:4])
        return "audio/wav", wav_bytes(concat(pieces, gap=16), rate=16000)

    # -- inpainting (harmonisation) ----------------------------------------------------------------
    def read_inputs(self, run: Run, source: Path, voices: str | None = None
                    ) -> tuple[Tensor, Tensor, list[str], dict[str, list[str]]]:
        """Grids to fill, their masks (True = fill), the pieces' names and the files skipped (reason → names)
        from a melody or four-part file, or a folder of them (bad files there are skipped and counted).

        Arguments:
            run: a grid run (its window and soprano range).
            source: a MIDI/MusicXML file or a folder of them.
            voices: the voices to fill, ``ATB`` (default) or e.g. ``A`` or ``ATB:16-48`` (16ths).

        Raises:
            DataError: for an unusable single file, or a folder without one usable file; ConfigError for bad
                voices or a run that is not a grid run.
        """
        if run.spec.form != "grid":
            raise ConfigError(f"harmonising fills the SATB grid; this {run.family} run models {run.spec.form} "
                              "(train diffusion on the chorales)")
        fill, span = _parse_voices(voices)
        if not source.exists():
            raise DataError(f"{source} does not exist; give a MIDI/MusicXML melody or a folder of them")
        files = [source] if source.is_file() else sorted(
            f for f in source.rglob("*") if f.is_file() and f.suffix.lower() in MUSIC_SUFFIXES)
        if not files:
            raise DataError(f"folder {source} has no MIDI or MusicXML files ({', '.join(MUSIC_SUFFIXES)})")
        grids, masks, names = [], [], []
        skipped: dict[str, list[str]] = {}
        for f in files:
            try:
                g, m = self._one_input(run, f, fill, span)
            except DataError as e:
                if len(files) == 1:
                    raise
                why = str(e).replace(f.name, "", 1).strip(" :").split(" (")[0].split(";")[0]
                skipped.setdefault(why, []).append(f.name)
                continue
            grids.append(g)
            masks.append(m)
            names.append(f.stem)
        if not grids:
            why = "; ".join(f"{len(v)} {k}" for k, v in skipped.items())
            raise DataError(f"no file in {source} can be harmonised ({why})")
        return torch.from_numpy(np.stack(grids)), torch.from_numpy(np.stack(masks)), names, skipped

    def _one_input(self, run: Run, path: Path, fill: list[int], span: tuple[int, int] | None
                   ) -> tuple[np.ndarray, np.ndarray]:
        t = run.spec.shape[1]
        if path.suffix.lower() not in MUSIC_SUFFIXES:
            raise DataError(f"{path.name}: not a MIDI or MusicXML file")
        keep = [v for v in range(4) if v not in fill]
        if keep == [0]:
            piece = melody_from_file(path)
        else:
            res = parse_file(path)
            if res.piece is None:
                raise DataError(f"{path.name}: {res.why}; filling {''.join(LETTERS[v] for v in fill)} needs the "
                                f"other voices given (or fill ATB under a melody)")
            piece = res.piece
        end = max([int((v[:, 0] + v[:, 1]).max()) for i, v in enumerate(piece.voices) if i in keep and len(v)],
                  default=0)
        if end == 0:
            raise DataError(f"{path.name}: has no notes")
        if end > t:
            raise DataError(f"{path.name}: the melody is {end} 16ths long but the model's window is {t}; "
                            f"give at most {t // 4} quarter notes, or train with --length {-(-end // 4) * 4}")
        envelope = run.spec.info.get("envelope", [[LOW, HIGH]] * 4)
        for v in keep:
            r = piece.range_of(v)
            lo, hi = envelope[v]
            if r is not None and (r[0] < lo or r[1] > hi):
                what = "soprano" if v == 0 else ("alto", "tenor", "bass")[v - 1]
                worst = r[0] if r[0] < lo else r[1]
                raise DataError(f"{path.name}: the {what} reaches {pitch_name(worst)} ({worst}), outside the "
                                f"{what} range {pitch_name(lo)}–{pitch_name(hi)} of the training chorales; "
                                "transpose it")
        g = to_grid(piece, t)
        m = np.zeros((4, t), bool)
        a, b = span if span is not None else (0, end)
        m[fill, a : min(b, t)] = True
        g[m] = 0
        return g, m

    def read_inpaint_inputs(self, run: Run, source: Path, box: str | None, mask: Path | None
                            ) -> tuple[Tensor, Tensor]:
        """``genlab inpaint RUN --images MELODY --box ATB``: the voices to fill in ``--box`` (default ATB, e.g.
        ``A`` or ``ATB:0-32`` in 16ths); ``--mask`` files are for images."""
        if mask is not None:
            raise ConfigError("music takes no --mask file; name the voices to fill with --box, e.g. ATB or A:0-32")
        x, m, _, _ = self.read_inputs(run, source, box)
        return x, m

    def check_inpaint(self, run: Run, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.as_tensor(x)
        x = x[None] if x.ndim == 2 else x
        shape = tuple(run.spec.shape)
        if x.ndim != 3 or tuple(x.shape[1:]) != shape or x.dtype != torch.int64:
            raise DataError(f"music grids must be int64 of shape (N, {shape[0]}, {shape[1]}), got {x.dtype} "
                            f"{tuple(x.shape)}")
        if int(x.min()) < 0 or int(x.max()) >= LEVELS:
            raise DataError(f"grid values must be in 0..{LEVELS - 1}")
        m = torch.as_tensor(mask).bool()
        m = m[None] if m.ndim == 2 else m
        try:
            m = m.expand_as(x)
        except RuntimeError:
            raise ConfigError(f"mask of shape {tuple(torch.as_tensor(mask).shape)} does not fit grids of shape "
                              f"{tuple(x.shape)}") from None
        if not m.any():
            raise ConfigError("the mask selects nothing to fill; name the voices to fill (e.g. ATB)")
        return x, m

    def write_inpainted(self, run: Run, x: Tensor, mask: Tensor, filled: Tensor, path: Path,
                        names: Sequence[str] | None = None, options: Mapping[str, Any] | None = None) -> Path:
        """A folder with ``NAME.mid/.musicxml/.wav/.png`` per harmonisation, or one file of them all in a row."""
        pieces = [from_grid(g.numpy(), names[i] if names else f"harmonized-{i:03d}") for i, g in enumerate(filled)]
        chosen = self.sample_format(path, None)
        if chosen == "npz":
            import io

            buf = io.BytesIO()
            np.savez(buf, x=filled.numpy(), given=x.numpy(), mask=mask.numpy())
            write_bytes(path, buf.getvalue())
            return path
        return write_pieces(pieces, path, chosen, options)

    # -- evaluation --------------------------------------------------------------------------------
    def likelihood(self, run: Run, test: Dataset, batch_size: int) -> dict[str, Any]:
        """The generic likelihood report plus nats per 16th frame (every family) and per token (token runs)."""
        from genlab.metrics.likelihood import dataset_log_prob, likelihood_report

        if run.model.likelihood == "none":
            return likelihood_report(run.model, test, batch_size)
        if run.spec.form == "grid":
            rep = likelihood_report(run.model, test, batch_size)
            rep["nll_per_frame"] = rep["nll_nats"] / run.spec.shape[1]
            rep["nll_per_cell"] = rep["nll_nats"] / run.spec.dims
            return rep
        lp = dataset_log_prob(run.model, test, batch_size)
        x = test.x
        frames = VOCAB.frames(x)
        rep = {"likelihood": run.model.likelihood, "nll_nats": float(-lp.mean()),
               "nll_nats_sem": float(lp.std() / math.sqrt(len(lp))) if len(lp) > 1 else 0.0,
               "bits_per_dim": float(-lp.mean() / (x.shape[1] * math.log(2))), "n_examples": len(lp),
               "dims": int(x.shape[1]), "nll_per_token": float(-lp.sum() / x.numel()),
               "nll_per_frame": float(-lp.sum() / max(frames, 1)), "frames": frames}
        return rep

    def sample_metrics(self, run: Run, splits: Splits, options: Any, evaluation: Evaluation, *, seed: int,
                       progress: Progress) -> None:
        from genlab.metrics.music import markov_baseline, music_report

        rep = evaluation.report
        length = int(run.spec.info.get("length", run.spec.shape[-1]))
        if run.spec.form == "tokens" and options.markov:
            progress("markov baseline", 0, 1)
            train = np.asarray(splits.train.stream) if hasattr(splits.train, "stream") else splits.train.x.numpy()
            windows = splits.test.x.numpy()
            rep["markov"] = markov_baseline(train, windows, run.spec.levels, VOCAB.frames(windows),
                                            orders=range(1, options.markov + 1))
            progress("markov baseline", 1, 1)
        if not options.samples:
            rep["music"] = {"note": "no samples drawn (--samples 0)"}
            return
        progress("samples", 0, options.samples)
        x = draw(run, options.samples, seed, length)
        progress("samples", options.samples, options.samples)
        generated = [p.crop(0, length) for p in self.pieces(run, x)]
        test_pieces, train_pieces = reference_pieces(run, splits)
        reference = excerpts(test_pieces, length)
        rng = np.random.default_rng(seed)
        train_ex = excerpts(train_pieces, length)
        pick = rng.choice(len(train_ex), size=min(len(train_ex), max(options.samples, len(reference))), replace=False)
        progress("musical metrics", 0, 1)
        res = music_report(generated, reference, [train_ex[i] for i in pick])
        progress("musical metrics", 1, 1)
        if run.spec.form == "tokens":
            errors = [VOCAB.decode(row)[1] for row in x.numpy()]
            res["grammar_errors_per_sample"] = float(np.mean(errors))
        res["excerpt_length"] = length
        rep["music"] = res
        evaluation.samples = x

    def rows(self, report: Mapping[str, Any]) -> list[tuple[str, str]]:
        rows = likelihood_rows(report)
        if "nll_per_token" in report:
            rows.append(("NLL (nats/token)", f"{report['nll_per_token']:.4f}"))
        if "nll_per_frame" in report:
            kind = "" if report.get("likelihood") == "exact" else " (bound)"
            rows.append(("NLL (nats/16th frame)", f"{report['nll_per_frame']:.4f}{kind}"))
        if "markov" in report:
            mk = report["markov"]
            rows.append((f"Markov chain order {mk['best']} (nats/token, /frame)",
                         f"{mk['nll_per_token']:.4f}, {mk['nll_per_frame']:.4f}"))
        m = report.get("music", {})
        if "yang_lerch" not in m:
            return rows
        yl, ms, mb, vl, vb = m["yang_lerch"], m["measures"], m["measures_bach"], m["voice_leading"], \
            m["voice_leading_bach"]
        rows.append(("excerpts", f"{m['n_generated']} samples vs {m['n_reference']} held-out, "
                                 f"{m['excerpt_length']} 16ths each"))
        for k, f in yl["features"].items():
            rows.append((f"OA / KL {k.replace('_', ' ')}", f"{f['oa']:.3f} / {f['kl']:.3f} (train {f['oa_ceiling']:.3f}"
                                                           f" / {f['kl_ceiling']:.3f})"))
        rows.append(("mean OA (share of the ceiling)",
                     f"{yl['mean_oa']:.3f} ({yl['oa_ratio']:.2f} of {yl['mean_oa_ceiling']:.3f})"))
        for key, name in (("scale_consistency", "scale consistency"), ("polyphony", "polyphony"),
                          ("empty_beat_rate", "empty-beat rate")):
            rows.append((f"{name} (Bach)", f"{fmt(ms[key], 3)} ({fmt(mb[key], 3)})"))
        rows.append(("parallel 5ths / 8ves per 1,000 moves (Bach)",
                     f"{fmt(vl['fifths_per_1000'], 2)} / {fmt(vl['octaves_per_1000'], 2)} "
                     f"({fmt(vb['fifths_per_1000'], 2)} / {fmt(vb['octaves_per_1000'], 2)})"))
        rows.append(("voice crossing, share of frames (Bach)",
                     f"{fmt(vl['crossing_share'], 4)} ({fmt(vb['crossing_share'], 4)})"))
        rows.append(("notes out of range, share (Bach)",
                     f"{fmt(vl['out_of_range_share'], 4)} ({fmt(vb['out_of_range_share'], 4)})"))
        if "grammar_errors_per_sample" in m:
            rows.append(("token grammar errors per sample", f"{m['grammar_errors_per_sample']:.2f}"))
        return rows

    def summary(self, report: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {k: report.get(k) for k in ("nll_per_token", "nll_per_frame") if k in report}
        m = report.get("music", {})
        if "yang_lerch" in m:
            out.update(mean_oa=m["yang_lerch"]["mean_oa"], oa_ratio=m["yang_lerch"]["oa_ratio"],
                       scale_consistency=m["measures"]["scale_consistency"],
                       empty_beat_rate=m["measures"]["empty_beat_rate"],
                       parallels_per_1000=m["voice_leading"]["parallels_per_1000"],
                       crossing_share=m["voice_leading"]["crossing_share"],
                       out_of_range_share=m["voice_leading"]["out_of_range_share"])
        if "markov" in report:
            out["markov_nll_per_token"] = report["markov"]["nll_per_token"]
        return out

    def columns(self) -> list[tuple[str, str, list[Column]]]:
        return [("Music", "NLL on the held-out chorales (lower is better); musical metrics of sampled excerpts "
                          "against held-out Bach.",
                 [Column("nll_per_frame", "nats/16th", False), Column("nll_per_token", "nats/token", False),
                  Column("mean_oa", "mean OA", True), Column("oa_ratio", "OA / ceiling", True),
                  Column("scale_consistency", "scale consistency", True),
                  Column("empty_beat_rate", "empty beats", False),
                  Column("parallels_per_1000", "parallels /1000", False),
                  Column("crossing_share", "crossing", False)])]

    def report_sections(self, entries: Mapping[str, tuple[Run, Evaluation]], splits: Splits
                        ) -> list[tuple[str, str]]:
        """Piano rolls with an audio player beside each, two pieces per run."""
        from genlab.report.html import image_block, media_block
        from genlab.report.music import pianoroll_png, wav_bytes

        blocks = []
        for name, (run, ev) in entries.items():
            if ev.samples is None:
                continue
            for i, p in enumerate(self.pieces(run, ev.samples[:2])):
                length = int(run.spec.info.get("length", p.length))
                p = p.crop(0, length)
                blocks.append(image_block(f"{name} #{i}", pianoroll_png([p])))
                blocks.append(media_block(f"{name} #{i}", "audio/wav", wav_bytes(p, rate=16000)))
        return [("Piano rolls and audio", "".join(blocks))] if blocks else []


def draw(run: Run, n: int, seed: int, length: int) -> Tensor:
    """``n`` seeded samples; a token model draws enough tokens for ``length`` 16ths (1.5× the training data's
    tokens per frame)."""
    from genlab.api import sample

    opts: dict[str, Any] = {}
    if run.spec.form == "tokens":
        opts["max_tokens"] = max(8, math.ceil(1.5 * float(run.spec.info.get("tokens_per_frame", 3.0)) * length))
    if "progress" in run.model.sample_option_names():
        opts["progress"] = False
    return sample(run, n, seed=seed, **opts)


def reference_pieces(run: Run, splits: Splits) -> tuple[list[Piece], list[Piece]]:
    """(held-out, training) pieces of a run's data, untransposed."""
    from genlab.config import build

    cfg = build(MusicDataConfig, run.config.get("data", {})) if run.config else MusicDataConfig()
    src = find_music(cfg.data)
    corpus = read_corpus(src, cfg.pieces)
    train, test = split_pieces(corpus.pieces, src.bwv, cfg.test_fraction)
    return test, train
