"""Text modality: document splits, binary files, memory-mapped streams, built-in corpora, the run's tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.config import build
from genlab.errors import DataError
from genlab.modalities.text import TextDataConfig
from genlab.modalities.text import load_text as _load_text
from tests.conftest import shared_file


def load_text(cfg):
    s = _load_text(cfg)
    return s.train, s.test, s.preprocessing


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))


def test_folder_split_by_document_with_include(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    for i in range(30):
        (root / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 5)
    (root / "notes.bin").write_bytes(b"\x00\x01binary")
    cfg = build(TextDataConfig, {"data": str(root), "include": "*.py", "block_size": 8, "test_fraction": 0.2})
    train, val, prep = load_text(cfg)
    assert prep["train_docs"] + prep["val_docs"] == 30 and prep["val_docs"] >= 1
    # documents are separated by <|endoftext|> (id 0); each split starts with it
    assert int(train.stream[0]) == 0 and int(val.stream[0]) == 0
    assert (np.asarray(train.stream) == 0).sum() == prep["train_docs"]
    # batches depend only on (seed, step) and are windows of the stream
    a, _ = train.batch(5, 4, seed=1)
    b, _ = train.batch(5, 4, seed=1)
    assert a.shape == (4, 8) and a.dtype == torch.int64 and torch.equal(a, b)
    assert val.x.shape[1] == 8 and val.head(2).x.shape == (2, 8)
    with pytest.raises(DataError, match="binary"):
        load_text(build(TextDataConfig, {"data": str(root), "block_size": 8}))


def test_non_utf8_file_is_a_one_line_error(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    with pytest.raises(DataError, match="not UTF-8") as e:
        load_text(build(TextDataConfig, {"data": str(p), "block_size": 8}))
    assert "\n" not in str(e.value)


def test_single_file_tail_split_and_cache(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("".join(f"paragraph {i}\n" for i in range(500)))
    cfg = build(TextDataConfig, {"data": str(p), "block_size": 16, "tokenizer": "bpe", "vocab_size": 300})
    train, val, prep = load_text(cfg)
    assert prep["unit"] == "byte" and isinstance(train.stream, np.memmap)
    assert train.tokenizer.decode(val.stream[:40]).startswith("paragraph 45")
    train2, _, prep2 = load_text(cfg)
    assert prep2["cache"] == prep["cache"] and np.array_equal(train2.stream, train.stream)


def test_builtin_corpora():
    train, val, prep = load_text(build(TextDataConfig, {"data": "lee", "block_size": 32}))
    assert prep["tokenizer"] == "char" and len(train) > len(val) > 0
    assert train.tokenizer.decode(train.x[0]).startswith("Hundreds of people")
    _, _, prep = load_text(build(TextDataConfig, {"data": "pystdlib", "max_docs": 6, "block_size": 32}))
    assert prep["train_docs"] + prep["val_docs"] == 6


def test_tinyshakespeare_char_vocab():
    p = shared_file("tinyshakespeare.txt")
    _train, _val, prep = load_text(build(TextDataConfig, {"data": str(p), "block_size": 64}))
    assert prep["vocab_size"] == 66  # nanoGPT's 65 characters + <|endoftext|>
    assert 0.08 < prep["val_tokens"] / (prep["train_tokens"] + prep["val_tokens"]) < 0.12


def test_generations_joining_a_text_batch_match_fixed_batch_streaming(tmp_path):
    """A text batch (iteration-level batching): greedy generations that join at different steps, or leave early,
    give the text, finish reasons and samples of the fixed-batch stream; options that cannot join give None."""
    import genlab

    run = genlab.train("gpt", "lee", out=tmp_path / "r", n_layer=1, n_head=2, n_embd=16, block_size=16, max_steps=3,
                       batch_size=4, quiet=True, device="cpu", eval_every=0, n_samples=1)
    opts = {"prompt": "The ", "max_tokens": 8, "temperature": 0.0}
    ref = run.modality.stream_texts(run, 1, options=opts)
    steps = [d for step in ref.steps for d in step]
    want_text, want_finish = "".join(d.text for d in steps), steps[-1].finish
    rows = run.modality.text_batch(run, 3, options=opts)
    assert rows is not None and rows.prompt_tokens == ref.prompt_tokens
    texts: dict[int, str] = {}
    finish: dict[int, str | None] = {}
    ids = [rows.add()]
    for s in range(20):
        if s in (1, 3):
            ids.append(rows.add())
        if s == 2:
            rows.remove(ids[1])  # a client gone: its generation stops
        for d in rows.step():
            assert s < 2 or d.index != ids[1]
            texts[d.index] = texts.get(d.index, "") + d.text
            finish[d.index] = d.finish
        if not rows.live:
            break
    assert rows.live == 0 and rows.room == 3
    for i in (ids[0], ids[2]):
        assert texts[i] == want_text and finish[i] == want_finish
    assert torch.equal(rows.samples([ids[0], ids[2]]), ref.samples.expand(2, -1))
    assert run.modality.text_batch(run, 3, options={**opts, "repetition_penalty": 1.3}) is None
    assert run.modality.text_batch(run, 3, options={**opts, "max_tokens": 16}) is None  # past the block size
