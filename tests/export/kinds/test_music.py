"""Exported music models (gpt on event tokens, vae on SATB grids) write MIDI, MusicXML, WAV and piano rolls without
torch, the pieces the modality itself decodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.export.conftest import needs_export_extra
from tests.export.test_runtime import NO_TORCH_CLI, python
from tests.test_cli import assert_one_line_error, run_cli

needs_export_extra()
pytest.importorskip("pretty_midi", reason="the music extra is not installed: pip install 'genlab[music]'")


@pytest.mark.parametrize("key", ["gpt-music", "vae-music"])
def test_exported_music_decodes_to_the_modalitys_pieces(runs, key):
    from genlab.export.runtime import load

    run, exp = runs.run(key), load(runs.export(key))
    x = exp.sample(3, seed=1, **({"max_tokens": 40} if key == "gpt-music" else {}))
    mine = exp.writer.pieces(x)
    ref = run.modality.pieces(run, torch.from_numpy(x))
    assert [p.name for p in mine] == [p.name for p in ref]
    for a, b in zip(mine, ref, strict=True):
        assert a.length == b.length and all(np.array_equal(va, vb) for va, vb in zip(a.voices, b.voices, strict=True))


@pytest.mark.parametrize("key", ["gpt-music", "vae-music"])
def test_cli_writes_a_folder_of_pieces_without_torch(runs, tmp_path, key):
    out = tmp_path / "pieces"
    proc = python(NO_TORCH_CLI, "sample", str(runs.export(key)), "-n", "2", "--out", str(out), "--tempo", "100",
                  "--program", "0", *(["--max-tokens", "40"] if key == "gpt-music" else []))
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"sample-00{i}.{k}" for i in range(2) for k in ("mid", "musicxml", "png", "wav")]
    assert (out / "sample-000.mid").read_bytes()[:4] == b"MThd"
    one = tmp_path / "all.mid"
    proc = python(NO_TORCH_CLI, "sample", str(runs.export(key)), "-n", "2", "--out", str(one),
                  *(["--max-tokens", "40"] if key == "gpt-music" else []))
    assert proc.returncode == 0, proc.stderr
    assert one.read_bytes()[:4] == b"MThd"


@pytest.mark.parametrize("case", ["format", "tempo"])
def test_bad_music_options_are_one_line_errors(runs, tmp_path, capsys, case):
    args, needle = {
        "format": (["--out", tmp_path / "x.jpg"], "--format must be"),
        "tempo": (["--out", tmp_path / "x.mid", "--tempo", "5"], "--tempo must be between 20 and 300"),
    }[case]
    code, _, err = run_cli(["sample", runs.export("vae-music"), "-n", "2", *args], capsys)
    assert_one_line_error(code, err, needle)
    assert not list(tmp_path.iterdir())
