"""Tokenizers: round trips of Unicode text, JSON persistence, strict prompts."""

from __future__ import annotations

import pytest

from genlab.data.tokens import Tokenizer, train_bpe, train_char

UNICODE = "naïve café — 東京 🚀 ünïcödé\n\tdef f(x): return x ** 2  # ok\n"


def test_char_tokenizer_round_trip_unicode():
    tok = train_char([UNICODE])
    ids = tok.encode(UNICODE)
    assert ids.min() >= 1 and ids.max() < tok.vocab_size and len(ids) == len(UNICODE)
    assert tok.decode(ids) == UNICODE
    again = Tokenizer.from_json(tok.to_json())
    assert again.decode(again.encode(UNICODE)) == UNICODE
    with pytest.raises(Exception, match="not in this model's vocabulary"):
        tok.encode("Ω", strict=True)


def test_bpe_tokenizer_round_trip_unicode():
    tok = train_bpe([UNICODE * 20, "hello world " * 50], vocab_size=300)
    assert tok.eot_id == 0
    for text in (UNICODE, "unseen Ω≈ç√ text ⚡", ""):
        assert tok.decode(tok.encode(text)) == text
    again = Tokenizer.from_json(tok.to_json())
    assert again.encode(UNICODE).tolist() == tok.encode(UNICODE).tolist()
