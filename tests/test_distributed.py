"""The same trainer under torchrun: 2 gloo processes reproduce a single-process run with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ARGS = ["train", "vae", "--data", "digits", "--max-steps", "4", "--batch-size", "32", "--log-every", "1",
        "--eval-every", "0", "--device", "cpu", "--widths", "16,32", "--latent-dim", "8", "--hidden", "64",
        "--quiet", "--grad-clip", "1.0", "--ema-decay", "0.9", "--precision", "fp32"]  # a bf16 CPU would round


def _losses(run):
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["loss"], r["kl"]) for r in rows]


@pytest.mark.slow
def test_two_gloo_processes_match_single_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    single = subprocess.run([sys.executable, "-m", "genlab.cli", *ARGS, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "genlab.cli", *ARGS, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 4
    for (l1, k1), (l2, k2) in zip(one, two, strict=True):
        assert l1 == pytest.approx(l2, rel=1e-4, abs=1e-5)
        assert k1 == pytest.approx(k2, rel=1e-3, abs=1e-5)
    assert json.loads((tmp_path / "two" / "train_state.json").read_text())["world_size"] == 2
    assert json.loads((tmp_path / "one" / "train_state.json").read_text())["world_size"] == 1
    assert (tmp_path / "two" / "model.safetensors").is_file()
    assert not list((tmp_path / "two").glob("*.tmp"))
