"""The rnn family: incremental decoding equals the full forward pass, exact log-probabilities, prompts."""

from __future__ import annotations

import pytest
import torch

import genlab
from genlab.core import DataSpec
from genlab.data.tokens import train_char

SPEC = DataSpec(kind="text", shape=(12,), form="tokens", levels=9)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_decoder_steps_match_the_full_forward_and_log_prob_is_exact(cell):
    model = genlab.create("rnn", SPEC, cell=cell, n_layer=2, hidden=24, n_embd=8).eval()
    x = torch.randint(0, 9, (3, 12))
    full, _ = model.net(model._inputs(x))  # (B, T, V)
    dec = model.decoder(3)
    steps = [dec.prefill(torch.zeros(3, 1, dtype=torch.long))]
    steps += [dec.step(x[:, t : t + 1]) for t in range(11)]
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    lp = full.log_softmax(-1).gather(-1, x[..., None]).squeeze(-1).sum(1)
    assert torch.allclose(model.log_prob(x), lp, atol=1e-4)


def test_sample_with_a_prompt_keeps_it_and_is_seeded():
    tok = train_char(["abcdefgh"])
    model = genlab.create("rnn", DataSpec(kind="text", shape=(10,), form="tokens", levels=tok.vocab_size),
                          n_layer=1, hidden=16, n_embd=8).eval()
    model.attach({"tokenizer": tok})
    g = torch.Generator().manual_seed(0)
    x = model.sample(4, generator=g, prompt="abc", max_tokens=5)
    assert x.shape == (4, 8) and tok.decode(x[0, :3]) == "abc"
    assert torch.equal(x, model.sample(4, generator=torch.Generator().manual_seed(0), prompt="abc", max_tokens=5))
    with pytest.raises(genlab.GenlabError, match="not in this model's vocabulary"):
        model.sample(1, prompt="xyz")
