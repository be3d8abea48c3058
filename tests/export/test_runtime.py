"""The torch-free runtime: it never imports torch, samples every family, and `genlab sample EXPORTED` uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.export.conftest import CASES, needs_export_extra

needs_export_extra()

SRC = str(Path(__file__).resolve().parents[2] / "src")


#: ``genlab ARGS`` in a fresh process that fails if the command fails or imports torch
NO_TORCH_CLI = """
import sys
from genlab.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    assert e.code in (0, None), e.code
assert "torch" not in sys.modules, "torch was imported"
"""


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)


def test_runtime_samples_every_family_without_importing_torch(runs, tmp_path):
    folders = {key: str(runs.export(key)) for key in CASES}
    code = """
import json, sys
from genlab.export.runtime import load
out = {}
for key, folder in json.loads(sys.argv[1]).items():
    m = load(folder)
    opts = {"max_tokens": 5} if m.manifest["runtime"] in ("gpt", "rnn") else {}
    x = m.sample(3, seed=1, **opts)
    again = m.sample(3, seed=1, **opts)
    out[key] = [list(x.shape), str(x.dtype), bool((x == again).all())]
    if key == "diffusion":
        for sampler in ("ddpm", "ddim", "dpmpp_2m"):
            m.sample(2, seed=0, sampler=sampler, steps=3, eta=0.5, guidance=2.0, label=1)
    if key == "flow":
        m.sample(2, seed=0, temperature=0.5, label=[3, 4])
    if key == "gpt":
        m.sample(2, seed=0, max_tokens=20, top_k=5, top_p=0.9, repetition_penalty=1.2, temperature=0.8)
        m.sample(1, seed=0, max_tokens=4, kv_cache=False, temperature=0)
print(json.dumps({"samples": out, "torch": "torch" in sys.modules,
                  "genlab_modules": sorted(k for k in sys.modules if k.startswith("genlab"))}))
"""
    proc = python(code, json.dumps(folders))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["torch"] is False, res["genlab_modules"]
    s = res["samples"]
    assert s["vae"][:2] == [[3, 1, 8, 8], "uint8"] and s["gan"][:2] == [[3, 1, 8, 8], "uint8"]
    assert s["flow"][:2] == [[3, 1, 8, 8], "uint8"] and s["flow-vector"][:2] == [[3, 2], "float32"]
    assert s["diffusion"][:2] == s["diffusion-mlp"][:2] == [[3, 1, 8, 8], "uint8"]
    assert s["pixelcnn"][:2] == [[3, 1, 8, 8], "uint8"]
    assert s["ssvae"][:2] == [[3, 1, 8, 8], "uint8"]
    assert s["gpt"][:2] == [[3, 5], "int64"] and s["rnn"][:2] == [[3, 5], "int64"]
    assert s["gpt-molecule"][:2] == s["rnn-molecule"][:2] == s["gpt-music"][:2] == [[3, 5], "int64"]
    assert s["vae-music"][:2] == s["diffusion-music"][:2] == [[3, 4, 32], "int64"]
    assert s["vae-molecule"][:2] == [[3, runs.run("vae-molecule").spec.shape[0]], "int64"]
    assert all(v[2] for v in s.values()), "a seed must give the same samples"


def test_cli_sample_of_an_exported_folder_never_imports_torch(runs, tmp_path):
    code = NO_TORCH_CLI
    grid = tmp_path / "grid.png"
    proc = python(code, "sample", str(runs.export("diffusion")), "-n", "6", "--out", str(grid), "--steps", "2",
                  "--label", "3", "--sampler", "ddim")
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    assert Image.open(grid).size[0] > 0
    proc = python(code, "sample", str(runs.export("gpt")), "--max-tokens", "8", "--prompt", "The")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("The") and len(proc.stdout) > 3
    proc = python(code, "sample", str(runs.export("flow-vector")), "-n", "50", "--format", "npz", "--out",
                  str(tmp_path / "v.npz"))
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "v.npz")["x"].shape == (50, 2)


def test_labels_and_options_are_checked(runs):
    from genlab.errors import CapabilityError, ConfigError
    from genlab.export.runtime import load

    m = load(runs.export("vae"))
    assert (m.sample(4, label=2, seed=0).shape == (4, 1, 8, 8))
    with pytest.raises(ConfigError, match="out of range"):
        m.sample(2, label=10)
    with pytest.raises(ConfigError, match="takes no sampling option"):
        m.sample(2, steps=3)
    with pytest.raises(ConfigError, match="-n must be at least 1"):
        m.sample(0)
    with pytest.raises(CapabilityError, match="unconditional"):
        load(runs.export("flow-vector")).sample(2, label=1)
    with pytest.raises(ConfigError, match="--sampler"):
        load(runs.export("diffusion")).sample(2, sampler="euler")
