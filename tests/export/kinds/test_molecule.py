"""Exported molecule models (gpt, rnn) sample SMILES without torch: the modality's decoding, files and conditions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.export.conftest import needs_export_extra
from tests.export.test_runtime import NO_TORCH_CLI, python
from tests.test_cli import assert_one_line_error, run_cli

needs_export_extra()
pytest.importorskip("rdkit", reason="the molecules extra is not installed: pip install 'genlab[molecules]'")


@pytest.mark.parametrize("key", ["gpt-molecule", "rnn-molecule"])  # SMILES, SELFIES
def test_exported_molecules_decode_as_the_modality_does(runs, key):
    from genlab.export.runtime import load

    run, exp = runs.run(key), load(runs.export(key))
    x = exp.sample(6, seed=2, max_tokens=20)
    assert exp.writer.smiles(x) == run.modality.smiles(run, torch.from_numpy(x))
    assert exp.manifest["kind"] == "molecule" and (runs.export(key) / "tokenizer.json").is_file()


def test_cli_samples_smiles_files_and_conditions_without_torch(runs, tmp_path):
    folder = runs.export("gpt-molecule")
    out = tmp_path / "mols.smi"
    proc = python(NO_TORCH_CLI, "sample", str(folder), "-n", "5", "--condition", "qed=0.8,logp=2", "--out", str(out),
                  "--max-tokens", "16")
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 5
    assert (tmp_path / "mols.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "mols.csv").read_text().splitlines()[0] == "smiles,canonical,valid,logp,qed,sa,tpsa,mw"
    proc = python(NO_TORCH_CLI, "sample", str(runs.export("rnn-molecule")), "-n", "3", "--max-tokens", "10")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3  # printed, one SMILES per line


def test_the_condition_becomes_the_runs_own_prompt(runs):
    from genlab.export.runtime import load

    run, exp = runs.run("gpt-molecule"), load(runs.export("gpt-molecule"))
    prompt = exp.writer.condition_prompt("qed=0.8,logp=2")
    assert prompt == run.modality.condition_prompt(run, "qed=0.8,logp=2")
    x = exp.sample(3, seed=0, prompt=prompt, max_tokens=8)
    assert (x[:, :2] == np.asarray(exp.runtime.prompt_ids(prompt))).all()  # two property tokens lead every row


@pytest.mark.parametrize("case", ["unknown-property", "out-of-range", "no-properties", "no-prompt", "both"])
def test_bad_conditions_are_one_line_errors(runs, tmp_path, capsys, case):
    args, needle = {
        "unknown-property": ([runs.export("gpt-molecule"), "--condition", "foo=1"], "unknown property 'foo'"),
        "out-of-range": ([runs.export("gpt-molecule"), "--condition", "qed=5"], "outside the training data's range"),
        "no-properties": ([runs.export("rnn-molecule"), "--condition", "qed=0.5"], "trained without --properties"),
        "no-prompt": ([runs.export("vae-music"), "--condition", "qed=0.5"], "take no --condition"),
        "both": ([runs.export("gpt-molecule"), "--condition", "qed=0.8", "--prompt", "<qed:1>"], "not both"),
    }[case]
    code, _, err = run_cli(["sample", *args, "-n", "2", "--out", tmp_path / "never.smi"], capsys)
    assert_one_line_error(code, err, needle)
    assert not list(tmp_path.iterdir())


def test_rnn_int8_quantizes_the_recurrent_cell(runs, tmp_path):
    """Dynamic int8 covers the LSTM itself (ONNX Runtime's DynamicQuantizeLSTM), not only the embedding and head."""
    import onnx

    from genlab.export.pipeline import export_run

    out = tmp_path / "rnn-int8"
    export_run(runs.run("rnn"), out, quantize="int8")
    manifest = json.loads((out / "export.json").read_text())
    ops = {n.op_type for n in onnx.load(str(out / "step.onnx"), load_external_data=False).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    q = manifest["quality"]
    assert q["metric"] == "perplexity" and q["within_bound"] and np.isfinite(q["int8"])
    assert manifest["size_bytes"] < manifest["size_fp32_bytes"]
