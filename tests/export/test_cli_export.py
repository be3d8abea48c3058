"""`genlab export`, `genlab bench-export` and `genlab sample EXPORTED` through the CLI, and every bad input: one
line, exit code 2, nothing written."""

from __future__ import annotations

import json

import pytest

from tests.export.conftest import needs_export_extra
from tests.test_cli import assert_one_line_error, run_cli

needs_export_extra()


def test_export_then_sample(runs, tmp_path, capsys):
    out = tmp_path / "model.onnx.d"
    code, stdout, err = run_cli(["export", runs.run("gan").path, "--format", "onnx", "--out", out], capsys)
    assert code == 0, err
    assert "graph generator" in stdout and "parity" in stdout
    code, stdout, err = run_cli(["sample", out, "-n", "12", "--out", tmp_path / "g.png", "--nrow", "4"], capsys)
    assert code == 0, err
    assert (tmp_path / "g.png").is_file() and "wrote 12 samples" in stdout
    code, stdout, err = run_cli(["sample", runs.export("gpt"), "-n", "2", "--max-tokens", "5"], capsys)
    assert code == 0, err
    assert stdout.count("--- sample") == 2


def newer(folder, tmp_path):
    import shutil

    copy = tmp_path / "newer"
    shutil.copytree(folder, copy)
    m = json.loads((copy / "export.json").read_text())
    m["format_version"] = 99
    (copy / "export.json").write_text(json.dumps(m))
    return copy


@pytest.mark.parametrize("case", ["format", "quantize", "calibrate-0", "no-calibration", "exists", "no-family",
                                  "newer-format", "bad-option", "label-unconditional", "bad-format-out",
                                  "other-form"])
def test_bad_inputs(case, runs, tmp_path, capsys, monkeypatch):
    from genlab.export.exporters import EXPORTERS, FORM_EXPORTERS

    out = tmp_path / "out.d"
    vae = runs.run("vae").path
    args, needles = {
        "format": (["export", vae, "--format", "tflite", "--out", out], ["--format must be onnx"]),
        "quantize": (["export", vae, "--quantize", "int4", "--out", out], ["--quantize must be int8"]),
        "calibrate-0": (["export", vae, "--quantize", "int8", "--calibrate", "0", "--out", out], ["--calibrate"]),
        "no-calibration": (["export", vae, "--quantize", "int8", "--out", out], ["needs calibration samples",
                                                                                 "--calibrate N"]),
        "exists": (["export", vae, "--out", out], ["already exists", "--overwrite"]),
        "no-family": (["export", vae, "--out", out], ["family 'vae' cannot be exported", "exportable"]),
        "newer-format": (["sample", None, "-n", "2", "--out", tmp_path / "x.png"], ["format version 99",
                                                                                    "upgrade genlab"]),
        "bad-option": (["sample", runs.export("vae"), "--out", tmp_path / "x.png", "--steps", "3"], ["--steps"]),
        "label-unconditional": (["sample", runs.export("flow-vector"), "--label", "1", "--out",
                                 tmp_path / "x.png"], ["unconditional"]),
        "bad-format-out": (["sample", runs.export("vae"), "--out", tmp_path / "x.jpg"], ["--format must be png"]),
        "other-form": (["export", runs.run("vae-penguins").path, "--out", out], ["vae run on tabular data",
                                                                               "cannot be exported to ONNX yet"]),
    }[case]
    if case == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if case == "no-family":
        monkeypatch.delitem(EXPORTERS._items, "vae")  # a family without an exporter
    if case == "other-form":  # a family whose exporter does not know the run's form
        from genlab.export.outputs import load_kind

        load_kind("tabular", graphs=True)
        monkeypatch.delitem(FORM_EXPORTERS, ("vae", "table"))
    if case == "newer-format":
        args[1] = newer(runs.export("vae"), tmp_path)
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.jpg").exists()
    if case != "exists":
        assert not out.exists()
    else:
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bench_export_table(runs, capsys, tmp_path):
    code, stdout, err = run_cli(["bench-export", runs.run("vae").path, "--samples", "40", "--calibrate", "16",
                                 "--repeats", "1", "--no-cold-start", "--json", tmp_path / "b.json"], capsys)
    assert code == 0, err
    for needle in ("pytorch fp32", "onnx fp32", "onnx int8", "latency b=64", "kid"):
        assert needle in stdout
    res = json.loads((tmp_path / "b.json").read_text())
    rows = {r["variant"]: r for r in res["rows"]}
    assert rows["onnx int8"]["size_bytes"] < rows["onnx fp32"]["size_bytes"]
    assert all(r["latency_b1_s"] > 0 and r["latency_b64_s"] > 0 for r in rows.values())


def test_tiny_preset(tmp_path, capsys):
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--config", "tiny", "--out", tmp_path / "r",
                            "--max-steps", "1", "--quiet", "--batch-size", "8", "--eval-every", "0"], capsys)
    assert code == 0, err
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model"]["widths"] == [16, 32] and cfg["model"]["latent_dim"] == 16
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--config", "huge", "--out", tmp_path / "r2"],
                           capsys)
    assert_one_line_error(code, err, "does not exist", "tiny")


def test_every_tiny_preset_is_a_valid_config_of_its_family():
    import tomllib

    from genlab.config import build
    from genlab.core import MODELS
    from genlab.presets import ROOT

    files = sorted((ROOT / "tiny").glob("*.toml"))
    assert {f.stem for f in files} >= {"vae", "gan", "flow", "pixelcnn", "diffusion", "gpt", "rnn"}
    for f in files:
        model = tomllib.loads(f.read_text())["model"]
        cfg = build(MODELS[f.stem].config_cls, model)
        assert all(getattr(cfg, k) == (tuple(v) if isinstance(v, list) else v) for k, v in model.items()), f.stem
