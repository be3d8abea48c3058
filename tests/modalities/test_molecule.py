"""The molecule modality: reading and canonicalising SMILES files, SELFIES, property conditioning, the sample files,
the MOSES evaluation and fine-tuning, through the API and the CLI; bad inputs are one line and write nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("rdkit", reason="the molecules extra is not installed")
pytest.importorskip("selfies", reason="the molecules extra is not installed")

import genlab
from genlab.config import build
from genlab.data.molecules import canonical, decode_molecules
from genlab.errors import DataError
from genlab.modalities.molecule import MoleculeDataConfig, load_molecules
from tests.test_cli import assert_one_line_error, run_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "moses-400.smi"
TINY_RNN = ["--n-layer", "1", "--hidden", "64", "--n-embd", "32", "--batch-size", "32", "--quiet", "--device", "cpu",
            "--eval-every", "0", "--n-samples", "4", "--lr", "5e-3"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path_factory.getbasetemp() / "molecule-cache"))


def _load(**opts):
    return load_molecules(build(MoleculeDataConfig, opts))


def test_invalid_molecules_are_counted_and_skipped(tmp_path):
    lines = DATA.read_text().splitlines()[:30]
    f = tmp_path / "mols.smi"
    f.write_text("SMILES\n" + "\n".join([*lines, "C1CC", "c1cccc1", lines[0] + " dup-name", ""]) + "\n")
    s = _load(data=str(f))
    assert s.preprocessing["molecules"]["all"] == {"read": 33, "invalid": 2, "duplicates": 1, "kept": 30}
    assert len(s.train) + len(s.test) == 30 and len(s.test) == 3
    assert s.train.spec.form == "tokens" and s.train.spec.kind == "molecule"
    csv_file = tmp_path / "mols.csv"
    csv_file.write_text("id,Smiles\n" + "".join(f"{i},{m}\n" for i, m in enumerate(lines)))
    assert len(_load(data=str(csv_file)).train) == 27
    with pytest.raises(DataError, match="no column nope"):
        _load(data=str(csv_file), column="nope")
    bad = tmp_path / "bad.smi"
    bad.write_text("C1CC\nxyz\nCCO\n")
    with pytest.raises(DataError, match=r"most molecules of .* are invalid"):
        _load(data=str(bad))
    empty = tmp_path / "empty.smi"
    empty.write_text("\n")
    with pytest.raises(DataError, match="holds no molecules"):
        _load(data=str(empty))


def test_selfies_windows_decode_to_the_molecules():
    s = _load(data=str(DATA), tokenizer="selfies")
    tok = s.train.tokenizer
    assert tok.kind == "selfies" and all(sym.startswith("[") or sym == "." for sym in tok.symbols)
    got = decode_molecules(tok, "selfies", s.test.x[:10])
    smiles = _load(data=str(DATA)).test
    want = decode_molecules(smiles.tokenizer, "smiles", smiles.x[:10])
    assert [canonical(g) for g in got] == want


def test_train_sample_condition_eval_through_the_cli(tmp_path, capsys):
    run = tmp_path / "rnn"
    code, out, err = run_cli(["train", "rnn", "--data", DATA, "--properties", "qed,logp", "--max-steps", "60",
                              "--out", run, *TINY_RNN], capsys)
    assert code == 0, err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["spec"]["info"]["conditions"]["names"] == ["qed", "logp"]
    assert (run / "samples.smi").is_file() and (run / "tokenizer.json").is_file()
    code, out, err = run_cli(["sample", run, "-n", "12", "--out", tmp_path / "mols.smi"], capsys)
    assert code == 0, err
    assert len((tmp_path / "mols.smi").read_text().splitlines()) == 12
    assert (tmp_path / "mols.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = (tmp_path / "mols.csv").read_text().splitlines()[0]
    assert header == "smiles,canonical,valid,logp,qed,sa,tpsa,mw"
    code, out, err = run_cli(["sample", run, "-n", "6", "--condition", "qed=0.8,logp=2", "--out",
                              tmp_path / "cond.smi"], capsys)
    assert code == 0, err
    assert len((tmp_path / "cond.smi").read_text().splitlines()) == 6
    code, out, err = run_cli(["sample", run, "-n", "6", "--condition", "qed=0.8", "--guidance", "2", "--out",
                              tmp_path / "guided.smi"], capsys)  # classifier-free guidance of the property prefix
    assert code == 0, err
    assert len((tmp_path / "guided.smi").read_text().splitlines()) == 6
    code, out, err = run_cli(["sample", run, "-n", "4", "--guidance", "2", "--out", tmp_path / "never.smi"], capsys)
    assert_one_line_error(code, err, "--guidance needs a prompt")
    assert not list(tmp_path.glob("never.*"))
    for condition, needle in (("foo=1", "unknown property 'foo'"), ("qed=5", "outside the training data's range"),
                              ("sa=3", "cannot be conditioned on sa"), ("qed", "cannot read --condition"),
                              ("qed=high", "bad value 'high' for qed")):
        code, out, err = run_cli(["sample", run, "-n", "4", "--condition", condition, "--out",
                                  tmp_path / "never.smi"], capsys)
        assert_one_line_error(code, err, needle)
        assert not list(tmp_path.glob("never.*")), condition
    code, out, err = run_cli(["eval", run, "--samples", "40", "--condition", "qed=0.8"], capsys)
    assert code == 0, err
    assert "FCD/Test" in out and "same-n ceiling" in out and "MAD qed" in out
    res = json.loads((run / "eval.json").read_text())
    assert 0 <= res["moses"]["valid"] <= 1 and res["ceiling"]["valid"] == 1.0 and res["ceiling"]["Novelty"] == 0.0
    assert res["likelihood"] == "exact" and res["condition"]["asked"] == {"qed": 0.8}
    code, out, err = run_cli(["eval", run, "--samples", "20", "--no-kl", "--no-ceiling", "--condition", "qed=0.8",
                              "--temperature", "0.8", "--guidance", "2"], capsys)
    assert code == 0, err
    assert "sampled with" in out and "temperature 0.8" in out
    res = json.loads((run / "eval.json").read_text())
    assert res["sampling"] == {"temperature": 0.8, "guidance": 2.0} and "conditional" in res["condition"]
    before = (run / "eval.json").read_bytes()
    for args, needle in ((["--guidance", "2"], "--guidance needs a --condition"),
                         (["--temperature", "0"], "--temperature must be positive")):
        code, out, err = run_cli(["eval", run, "--samples", "8", *args], capsys)
        assert_one_line_error(code, err, needle)
        assert (run / "eval.json").read_bytes() == before  # nothing half-written
    code, out, err = run_cli(["sample", run, "-n", "3"], capsys)  # printed, one SMILES per line
    assert code == 0 and len(out.splitlines()) == 3
    code, out, err = run_cli(["compare", "--data", DATA, "--runs", run, "--out", tmp_path / "cmp", "--samples", "30",
                              "--no-kl"], capsys)
    assert code == 0, err
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert "Beside the MOSES table" in page and "Property histograms" in page and "MOSES CharRNN" in page


def test_without_rdkit_molecule_data_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    f = tmp_path / "few.smi"
    f.write_text("CCO\nc1ccccc1\n")
    monkeypatch.setitem(sys.modules, "rdkit.Chem", None)
    code, _, err = run_cli(["train", "rnn", "--data", f, "--out", tmp_path / "never", "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "pip install 'genlab[molecules]'")
    assert not (tmp_path / "never").exists()


def test_a_run_without_properties_takes_no_condition_and_vae_cannot_be_prompted(tmp_path, capsys):
    run = genlab.train("vae", str(DATA), out=tmp_path / "vae", max_steps=3, batch_size=16, quiet=True, device="cpu",
                       eval_every=0, n_samples=2, latent_dim=8, hidden=16, seq_embd=8, seq_decoder=16, seq_layers=1)
    code, _, err = run_cli(["sample", tmp_path / "vae", "--condition", "qed=0.8", "--out", tmp_path / "x.smi"],
                             capsys)
    assert_one_line_error(code, err, "trained without --properties")
    assert not (tmp_path / "x.smi").exists()
    code, _, err = run_cli(["eval", tmp_path / "vae", "--samples", "4", "--temperature", "0.8"], capsys)
    assert_one_line_error(code, err, "takes no --temperature")
    assert not (tmp_path / "vae" / "eval.json").exists()
    x = genlab.api.load_splits(run).test.x[:2]
    path = run.model.interpolate(x[0], x[1], steps=5)  # decoded points on the line between two molecules
    assert path.shape == (5, run.spec.shape[0]) and len(run.modality.smiles(run, path)) == 5


def test_fine_tune_gpt_from_a_molecule_run_keeps_its_tokenizer_and_block(tmp_path):
    base = genlab.train("gpt", str(DATA), out=tmp_path / "base", max_steps=3, batch_size=16, quiet=True, device="cpu",
                        eval_every=0, n_samples=2, n_layer=1, n_head=2, n_embd=16)
    actives = tmp_path / "actives.smi"
    actives.write_text("\n".join(DATA.read_text().splitlines()[:40]) + "\nCC[Se]C\n")  # [Se]: not in the vocabulary
    tuned = genlab.train("gpt", str(actives), out=tmp_path / "tuned", init_from=str(tmp_path / "base"), max_steps=3,
                         batch_size=8, quiet=True, device="cpu", eval_every=0, n_samples=2)
    assert tuned.spec.shape == base.spec.shape and tuned.spec.levels == base.spec.levels
    assert tuned.config["preprocessing"]["skipped"]["unknown_symbols"] == 1
    assert torch.equal(genlab.sample(tuned, 3, seed=1), genlab.sample(genlab.load(tmp_path / "tuned"), 3, seed=1))
