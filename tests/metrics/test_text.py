"""Text metrics: perplexity of a uniform model is the vocabulary size; BLEU/chrF/ROUGE come from the libraries."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.core import DataSpec
from genlab.data.tokens import train_bpe, train_char
from genlab.metrics.text import language_model_report, overlap_scores, unit_counts
from genlab.models.gpt import GPT, GPTConfig


def _uniform(vocab: int) -> GPT:
    spec = DataSpec(kind="text", shape=(12,), form="tokens", levels=vocab)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8), spec)
    torch.nn.init.zeros_(model.net.lm_head.weight)  # tied: zero embeddings too → equal logits everywhere
    return model.eval()


def test_uniform_model_perplexity_is_vocab_size():
    tok = train_char(["abcdefghij"])
    model = _uniform(tok.vocab_size)
    x = torch.randint(1, tok.vocab_size, (5, 12))
    rep = language_model_report(model, x, tok)
    assert rep["perplexity"] == pytest.approx(tok.vocab_size, rel=1e-6)
    assert rep["bits_per_char"] == pytest.approx(math.log2(tok.vocab_size), rel=1e-6)


def test_bits_per_byte_counts_utf8_bytes():
    tok = train_bpe(["héllo wörld " * 30], vocab_size=280)
    counts = unit_counts(tok)
    ids = tok.encode("héllo wörld")
    assert counts[0] == 0 and int(counts[ids].sum()) == len("héllo wörld".encode())


def test_overlap_scores_use_reference_libraries():
    import sacrebleu

    hyp, ref = ["the cat sat on the mat"], ["the cat sat on a mat"]
    s = overlap_scores(hyp, ref)
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref]).score)
    assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyp, [ref]).score)
    assert s["rouge1"] == pytest.approx(100 * 5 / 6)
    perfect = overlap_scores(ref, ref)
    assert perfect["bleu"] == pytest.approx(100) and perfect["rougeL"] == pytest.approx(100)
