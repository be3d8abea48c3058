"""The CLI end to end, and every bad input: one line on stderr, exit code 2, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genlab.cli import main
from tests.conftest import TINY

FAST = ["--max-steps", "2", "--batch-size", "16", "--quiet", "--device", "cpu", "--eval-every", "0",
        "--widths", "16,32", "--latent-dim", "8", "--hidden", "64"]


def run_cli(args, capsys):
    """Run ``genlab ARGS`` in-process; returns (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("error:")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "vae"
    main_args = ["train", "vae", "--data", "digits", "--out", out, *FAST]
    try:
        main([str(a) for a in main_args])
    except SystemExit as e:
        assert e.code in (0, None)
    return out


def test_train_sample_eval_models_datasets(vae_run, tmp_path, capsys):
    assert {"config.json", "model.safetensors", "metrics.jsonl", "samples.png"} <= {p.name for p in
                                                                                     vae_run.iterdir()}
    cfg = json.loads((vae_run / "config.json").read_text())
    assert cfg["family"] == "vae" and cfg["model"]["latent_dim"] == 8 and cfg["data"]["data"] == "digits"
    code, out, err = run_cli(["sample", vae_run, "-n", "12", "--out", tmp_path / "g.png"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size[0] > 0
    code, out, err = run_cli(["sample", vae_run, "-n", "5", "--label", "3", "--format", "npz",
                              "--out", tmp_path / "s.npz"], capsys)
    assert code == 0, err
    arr = np.load(tmp_path / "s.npz")
    assert arr["x"].shape == (5, 1, 8, 8) and arr["x"].dtype == np.uint8 and (arr["y"] == 3).all()
    code, out, err = run_cli(["eval", vae_run, "--iwae-k", "4", "--max-examples", "20"], capsys)
    assert code == 0, err
    res = json.loads((vae_run / "eval.json").read_text())
    assert res["likelihood"] == "bound" and res["n_examples"] == 20 and 0 < res["bits_per_dim"] < 16
    assert res["model_options"] == {"iwae_k": 4}
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0 and "vae" in out and "gan" in out
    code, out, _ = run_cli(["models", "vae"], capsys)
    assert code == 0 and "--latent-dim" in out and "--budget" in out and "--shift" in out
    code, out, _ = run_cli(["datasets"], capsys)
    assert code == 0 and "mnist" in out and "digits" in out


def test_train_resume_continues(vae_run, tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", out, *FAST], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "vae", "--out", out, "--resume", "--max-steps", "4", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((out / "train_state.json").read_text())["step"] == 4


def test_config_file(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('[model]\nlatent-dim = 4\nwidths = [16, 32]\nhidden = 32\n'
                                     '[train]\nmax_steps = 1\nbatch_size = 8\nquiet = true\neval_every = 0\n')
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", tmp_path / "r", "--config",
                            tmp_path / "c.toml", "--device", "cpu"], capsys)
    assert code == 0, err
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model"]["latent_dim"] == 4 and cfg["train"]["batch_size"] == 8
    (tmp_path / "c.yaml").write_text("latent_dim: 4\nbogus: 1\n")
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", tmp_path / "r2", "--config",
                            tmp_path / "c.yaml"], capsys)
    assert_one_line_error(code, err, "--bogus")
    assert not (tmp_path / "r2").exists()


def _bad_folder(tmp_path, kind):
    root = tmp_path / kind
    root.mkdir()
    if kind == "corrupt":
        (root / "a").mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "a" / "ok.png")
        (root / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    elif kind == "mixed":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "small.png")
        Image.fromarray(np.zeros((12, 12), np.uint8)).save(root / "large.png")
    return root


@pytest.mark.parametrize("case", [
    "unknown-family", "unknown-dataset", "unknown-option", "bad-value", "bad-choice", "missing-path",
    "empty-folder", "corrupt-image", "mixed-sizes", "exists", "resume-nothing", "bad-npz"])
def test_bad_train_inputs(case, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "vae", "--out", out, "--quiet"]
    args, needles = {
        "unknown-family": (["train", "nosuch", "--data", "digits", "--out", out], ["unknown family 'nosuch'"]),
        "unknown-dataset": ([*base, "--data", "nosuch"], ["unknown dataset 'nosuch'", "mnist"]),
        "unknown-option": ([*base, "--data", "digits", "--lattent-dim", "3"], ["--lattent-dim"]),
        "bad-value": ([*base, "--data", "digits", "--latent-dim", "abc"], ["--latent-dim", "int"]),
        "bad-choice": ([*base, "--data", "digits", "--optimizer", "adagrad"], ["--optimizer", "adam"]),
        "missing-path": ([*base, "--data", tmp_path / "nope" / "x.npz"], ["does not exist"]),
        "empty-folder": ([*base, "--data", _bad_folder(tmp_path, "empty")], ["no .png"]),
        "corrupt-image": ([*base, "--data", _bad_folder(tmp_path, "corrupt")], ["broken.png"]),
        "mixed-sizes": ([*base, "--data", _bad_folder(tmp_path, "mixed")], ["--size"]),
        "exists": ([*base, "--data", "digits"], ["already exists", "--resume"]),
        "resume-nothing": ([*base, "--resume"], ["does not exist"]),
        "bad-npz": ([*base, "--data", tmp_path / "bad.npz"], ["no array named 'x'"]),
    }[case]
    if case == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if case == "bad-npz":
        np.savez(tmp_path / "bad.npz", images=np.zeros((4, 8, 8), np.uint8))
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, *needles)
    if case == "exists":
        assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    else:
        assert not out.exists(), "nothing may be written on bad input"


@pytest.mark.parametrize("case", ["n0", "label-range", "no-run", "bad-format", "newer-format",
                                  "unknown-family", "corrupt-weights", "gan-label-unconditional"])
def test_bad_sample_inputs(case, vae_run, tmp_path, capsys):
    import shutil

    run = vae_run
    if case in ("newer-format", "unknown-family", "corrupt-weights"):
        run = tmp_path / "copy"
        shutil.copytree(vae_run, run)
        cfg = json.loads((run / "config.json").read_text())
        if case == "newer-format":
            cfg["format_version"] = 99
        elif case == "unknown-family":
            cfg["family"] = "hyperwarp"
        (run / "config.json").write_text(json.dumps(cfg))
        if case == "corrupt-weights":
            (run / "model.safetensors").write_bytes(b"garbage")
    if case == "gan-label-unconditional":
        run = tmp_path / "gan"
        g = ["--g-widths", "16", "--d-widths", "16", "--d-features", "16", "--z-dim", "4", "--no-conditional"]
        code, _, err = run_cli(["train", "gan", "--data", "digits", "--out", run, "--max-steps", "1",
                                "--batch-size", "8", "--quiet", "--eval-every", "0", *g], capsys)
        assert code == 0, err
    args, needles = {
        "n0": (["sample", run, "-n", "0"], ["-n must be at least 1"]),
        "label-range": (["sample", run, "--label", "10"], ["label 10 is out of range", "0..9"]),
        "no-run": (["sample", tmp_path / "nope"], ["does not exist"]),
        "bad-format": (["sample", run, "--format", "gif"], ["--format"]),
        "newer-format": (["sample", run], ["newer genlab"]),
        "unknown-family": (["sample", run], ["unknown family 'hyperwarp'"]),
        "corrupt-weights": (["sample", run, "--out", tmp_path / "x.png"], ["model.safetensors"]),
        "gan-label-unconditional": (["sample", run, "--label", "1"], ["unconditional"]),
    }[case]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "x.png").exists()


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "genlab.cli", "train", "vae", "--data", "nosuch"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: unknown dataset")
    assert "Traceback" not in proc.stderr


def test_tiny_configs_are_valid_cli_options():
    from genlab.api import option_classes
    from genlab.config import fields_of

    for family, opts in TINY.items():
        names = set().union(*(fields_of(c) for c in option_classes(family)))
        assert set(opts) <= names, family


def test_condition_on_a_kind_without_conditions_is_one_line(vae_run, tmp_path, capsys):
    code, _, err = run_cli(["sample", vae_run, "--condition", "x=1", "--out", tmp_path / "c.png"], capsys)
    assert_one_line_error(code, err, "image data takes no --condition")
    assert not (tmp_path / "c.png").exists()
