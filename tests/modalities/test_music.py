"""The music modality: loading and splitting, both forms, sample files, harmonising, evaluation, and every bad input
through the CLI (one line, exit 2; in a folder: skipped and counted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import genlab
from genlab.config import build
from genlab.data.music import LEVELS, VOCAB, Piece, from_grid, grid_pitch, to_grid
from genlab.data.music_corpus import split_groups, split_pieces
from genlab.modalities.music import MusicDataConfig, load_music
from genlab.report.music import write_pieces
from tests.conftest import TINY
from tests.test_cli import assert_one_line_error, run_cli

pytest.importorskip("pretty_midi")
pytest.importorskip("music21")

MINI = Path(__file__).resolve().parents[1] / "data" / "chorales-mini"
OPTS = {"length": 32, "block_size": 64}
FAST = ["--max-steps", "3", "--batch-size", "8", "--quiet", "--device", "cpu", "--eval-every", "0", "--n-samples", "2"]


def piece(*voices, length=16, name="p"):
    return Piece(tuple(np.asarray(v, dtype=np.int64).reshape(-1, 3) for v in voices), length, name)


def test_load_both_forms_split_and_transpose():
    cfg = build(MusicDataConfig, {"data": str(MINI), **OPTS})
    grid = load_music(cfg, "grid")
    tokens = load_music(cfg, "tokens")
    assert grid.train.spec.shape == (4, 32) and grid.train.spec.levels == LEVELS and grid.train.spec.form == "grid"
    assert tokens.train.spec.shape == (64,) and tokens.train.spec.levels == VOCAB.size
    p = grid.preprocessing
    assert p["n_train_pieces"] + p["n_test_pieces"] == 8 and p["n_test_pieces"] >= 1
    assert grid.test.x.shape[1:] == (4, 32) and grid.test.x.dtype == torch.int64
    x, _ = grid.train.batch(5, 32, seed=0)
    assert torch.equal(x, grid.train.batch(5, 32, seed=0)[0]) and x.shape == (32, 4, 32)
    env = grid.train.spec.info["envelope"]
    pitch = grid_pitch(x.numpy())
    for v, (lo, hi) in enumerate(env):  # transpositions stay inside each voice's range
        sounding = pitch[:, v][pitch[:, v] >= 0]
        assert sounding.min() >= lo and sounding.max() <= hi
    assert p["transpositions"] > p["n_train_pieces"]  # some pieces moved
    w = tokens.test.x
    assert w.shape[1] == 64 and VOCAB.frames(w) > 0 and int(w.max()) < VOCAB.size


def test_split_keeps_every_tune_on_one_side():
    tune = [(4 * k, 4, p) for k, p in enumerate([67, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60, 62])]
    other = [(4 * k, 4, p) for k, p in enumerate([60, 64, 67, 72, 71, 69, 67, 65, 64, 62, 60, 59, 60])]
    pieces = [piece(tune, length=52, name="a"), piece([(s, d, p + 2) for s, d, p in tune], length=52, name="b"),
              piece(other, length=52, name="c")]
    assert split_groups(pieces, bwv=True) == [0, 0, 1]  # a transposed harmonisation shares its tune's group
    assert split_groups(pieces, bwv=False) == [0, 1, 2]
    train, test = split_pieces(pieces, bwv=True, test_fraction=0.5)
    assert {p.name for p in test} == {"c"} and {p.name for p in train} == {"a", "b"}


def test_chorales_are_listed_in_bwv_order():
    from genlab.modalities.music import chorales

    src = chorales()
    assert 340 <= len(src.files) <= 360 and src.bwv  # 371 Riemenschneider entries, 350 distinct files
    assert all(f.is_file() for f in src.files[:5]) and src.files[0].stem.startswith("bwv")


def test_write_pieces_folder_and_files(tmp_path):
    p = from_grid(to_grid(piece([(0, 8, 72)], [(0, 8, 67)], [(0, 8, 64)], [(0, 8, 48)], length=8, name="x")), "x")
    out = write_pieces([p, p.transpose(2)], tmp_path / "out", "folder")
    assert sorted(f.suffix for f in out.iterdir()) == [".mid", ".musicxml", ".png", ".wav"]  # same name twice
    assert (out / "x.wav").read_bytes()[:4] == b"RIFF" and (out / "x.png").read_bytes()[:4] == b"\x89PNG"
    for fmt in ("mid", "musicxml", "wav", "png"):
        assert write_pieces([p], tmp_path / f"one.{fmt}", fmt).stat().st_size > 0
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temporary folder left


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    out = {}
    for family in ("diffusion", "gpt"):
        tiny = [a for k, v in TINY[family].items() for a in (f"--{k.replace('_', '-')}",
                ",".join(map(str, v)) if isinstance(v, tuple) else str(v))]
        args = ["train", family, "--data", MINI, "--out", root / family, "--length", "32", "--block-size", "64",
                *FAST, *tiny]
        try:
            genlab.cli.main([str(a) for a in args])
        except SystemExit as e:
            assert e.code in (0, None)
        out[family] = root / family
    return out


def soprano(k, folder):
    """The first two bars of the soprano of the k-th training chorale of the mini set, as a melody file."""
    from genlab.data.music import parse_file
    from genlab.report.music import midi_bytes

    src = sorted(MINI.iterdir())[k]
    p = parse_file(src).piece
    assert p is not None
    path = folder / f"melody-{src.stem}.mid"
    path.write_bytes(midi_bytes(piece(p.crop(0, 32).voices[0], [], [], [], length=32)))
    return path


def test_cli_sample_harmonize_eval(runs, tmp_path, capsys):
    code, out, err = run_cli(["sample", runs["diffusion"], "-n", "2", "--out", tmp_path / "pieces", "--steps", "8"],
                             capsys)
    assert code == 0, err
    assert len(list((tmp_path / "pieces").glob("*.mid"))) == 2 and len(list((tmp_path / "pieces").iterdir())) == 8
    code, _, err = run_cli(["sample", runs["gpt"], "-n", "2", "--out", tmp_path / "g.mid"], capsys)
    assert code == 0, err
    melody = soprano(0, tmp_path)
    code, out, err = run_cli(["harmonize", runs["diffusion"], "--melody", melody, "--out", tmp_path / "h",
                              "--steps", "8"], capsys)
    assert code == 0, err
    assert "wrote 1 harmonisation" in out and (tmp_path / "h" / f"{melody.stem}.wav").is_file()
    code, out, err = run_cli(["eval", runs["gpt"], "--samples", "4", "--markov", "2"], capsys)
    assert code == 0, err
    rep = json.loads((runs["gpt"] / "eval.json").read_text())
    assert rep["likelihood"] == "exact" and rep["nll_per_token"] > 0 and rep["nll_per_frame"] > rep["nll_per_token"]
    assert rep["markov"]["best"] in (1, 2) and "yang_lerch" in rep["music"]
    assert rep["music"]["voice_leading_bach"]["moves"] > 0 and "OA" in out


def test_harmonize_keeps_the_melody_exactly(runs, tmp_path):
    run = genlab.load(runs["diffusion"], device="cpu")
    melody = soprano(1, tmp_path)
    x, mask, _, _ = run.modality.read_inputs(run, melody, "ATB")
    assert mask[:, 0].sum() == 0 and mask[:, 1:].any()
    filled = genlab.api.inpaint(run, x, mask, seed=0, steps=8, progress=False)
    assert torch.equal(filled[:, 0], x[:, 0]) and not (filled[:, 1:][mask[:, 1:]] >= LEVELS).any()
    assert torch.equal(filled, genlab.api.inpaint(run, x, mask, seed=0, steps=8, progress=False))


def _bad_inputs(tmp_path):
    from genlab.report.music import midi_bytes

    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06 garbage")
    empty = tmp_path / "empty.mid"
    empty.write_bytes(midi_bytes(piece([], [], [], [], length=8)))
    long = tmp_path / "long.mid"
    long.write_bytes(midi_bytes(piece([(4 * k, 4, 67) for k in range(12)], [], [], [], length=48)))
    high = tmp_path / "high.mid"
    high.write_bytes(midi_bytes(piece([(0, 4, 84), (4, 4, 83)], [], [], [], length=8)))
    ok = tmp_path / "ok.mid"
    ok.write_bytes(midi_bytes(piece([(0, 4, 67), (4, 4, 69), (8, 8, 67)], [], [], [], length=16)))
    return corrupt, empty, long, high, ok


def test_bad_melodies_one_line_and_folders_skip_and_count(runs, tmp_path, capsys):
    corrupt, empty, long, high, ok = _bad_inputs(tmp_path)
    cases = [(corrupt, "not a readable MIDI file"), (empty, "no notes"), (long, "model's window is 32"),
             (high, "outside the soprano range")]
    for path, needle in cases:
        code, _, err = run_cli(["harmonize", runs["diffusion"], "--melody", path, "--out", tmp_path / "o"], capsys)
        assert_one_line_error(code, err, needle)
        assert not (tmp_path / "o").exists()
    code, _, err = run_cli(["harmonize", runs["diffusion"], "--melody", ok, "--voices", "A", "--out",
                            tmp_path / "o"], capsys)
    assert_one_line_error(code, err, "needs the other voices given")
    code, _, err = run_cli(["harmonize", runs["gpt"], "--melody", ok, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, err, "cannot fill in voices")
    code, out, err = run_cli(["harmonize", runs["diffusion"], "--melody", tmp_path, "--out", tmp_path / "o.npz",
                              "--steps", "4"], capsys)
    assert code == 0, err
    assert "wrote 1 harmonisation" in out and err.count("skipped") == 4
    assert np.load(tmp_path / "o.npz")["x"].shape == (1, 4, 32)


def test_training_folder_skips_and_counts_bad_files(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for f in sorted(MINI.iterdir())[:3]:
        (data / f.name).write_bytes(f.read_bytes())
    corrupt, _, _, _, ok = _bad_inputs(tmp_path)
    for f in (corrupt, ok):
        (data / f.name).write_bytes(f.read_bytes())
    s = load_music(build(MusicDataConfig, {"data": str(data), **OPTS}), "grid")
    assert s.preprocessing["skipped"] == {"unreadable": 1, "has 1 voice, not four": 1}
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "ok.mid").write_bytes(ok.read_bytes())
    code, _, err = run_cli(["train", "diffusion", "--data", only_bad, "--out", tmp_path / "r", *FAST], capsys)
    assert_one_line_error(code, err, "no four-part piece", "1 has 1 voice")
    assert not (tmp_path / "r").exists()
