"""Symbol tokenizers (SMILES regex, SELFIES) and one-document-per-example token streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.core import DataSpec
from genlab.data.tokens import DocumentDataset, Tokenizer, token_streams, train_symbols
from genlab.errors import ConfigError


def test_smiles_regex_cuts_bracket_atoms_two_letter_elements_and_ring_labels():
    tok = train_symbols(["<qed:3>CC(Cl)c1ccc(Br)cc1[C@@H](N)[nH+]C%12CC%12"], "smiles")
    assert tok.split("<qed:3>CC(Cl)c1ccc(Br)cc1[C@@H](N)[nH+]C%12CC%12") == [
        "<qed:3>", "C", "C", "(", "Cl", ")", "c", "1", "c", "c", "c", "(", "Br", ")", "c", "c", "1", "[C@@H]", "(",
        "N", ")", "[nH+]", "C", "%12", "C", "C", "%12"]
    text = "c1ccc(Br)cc1Cl"
    ids = tok.encode(text)
    assert ids.min() >= 1 and tok.decode(ids) == text and tok.eot_id == 0
    assert tok.decode(np.concatenate([[0], ids, [0]])) == text  # <|endoftext|> decodes to nothing
    again = Tokenizer.from_json(tok.to_json())
    assert again.kind == "smiles" and again.symbols == tok.symbols and again.encode(text).tolist() == ids.tolist()
    assert tok.unit == "char" and tok.units(text) == len(text)
    assert tok.fits("CCBr") and not tok.fits("CCI")
    with pytest.raises(ConfigError, match="symbol 'I' is not in this model's vocabulary"):
        tok.encode("CCI", strict=True)
    assert tok.decode(tok.encode("CCI")) == "CC"  # unknown symbols dropped when not strict


def test_selfies_symbols_and_extra_tokens():
    tok = train_symbols(["[C][=C][Branch1][C][O][Ring1]"], "selfies", extra=("<logp:0>", "<logp:1>"))
    assert tok.split("<logp:1>[C][Branch1][O]") == ["<logp:1>", "[C]", "[Branch1]", "[O]"]
    assert "<logp:0>" in tok.symbols and tok.vocab_size == len(tok.symbols) + 1
    assert tok.decode(tok.encode("<logp:1>[C][O]")) == "<logp:1>[C][O]"


def test_document_dataset_serves_one_padded_document_per_example(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    docs = ["CCO", "c1ccccc1", "N", "CC(=O)O"]
    tok = train_symbols(docs, "smiles")
    spec = DataSpec(kind="molecule", shape=(8,), form="tokens")
    train, val, _ = token_streams("docs-test", lambda: tok, lambda: docs, lambda: docs[:2], spec, "test",
                                     documents=True)
    assert isinstance(train, DocumentDataset) and len(train) == 4 and len(val) == 2
    x = train.x
    assert x.shape == (4, 8) and x.dtype == torch.int64 and train.spec.levels == tok.vocab_size
    for row, doc in zip(x, docs, strict=True):
        n = len(tok.split(doc))
        assert tok.decode(row[:n]) == doc and (row[n:] == 0).all()  # ends with <|endoftext|>, padded with it
    b1, _ = train.batch(3, 2, seed=0)
    b2, _ = train.batch(3, 2, seed=0)
    assert torch.equal(b1, b2) and b1.shape == (2, 8)
    epoch = torch.cat([train.batch(s, 2, seed=0)[0] for s in range(2)])
    assert sorted(map(tuple, epoch.tolist())) == sorted(map(tuple, x.tolist()))  # one epoch = every document
    assert torch.equal(train.head(2).x, x[:2])
