"""Token decoding: top-k / top-p never leave their sets, repetition penalty, greedy, stop conditions."""

from __future__ import annotations

import pytest
import torch

from genlab.errors import ConfigError
from genlab.samplers.decoding import (
    DecodingOptions,
    GuidedDecoder,
    generate,
    guide,
    next_token,
    repetition_penalty,
    top_k_filter,
    top_p_filter,
)


def test_top_k_never_samples_outside_the_k_most_likely():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=g)
    allowed = torch.topk(logits, 5, dim=-1).indices
    for _ in range(200):
        tok = next_token(logits, temperature=1.5, top_k=5, generator=g)
        assert (allowed == tok[:, None]).any(1).all()


def test_top_p_never_samples_outside_the_nucleus():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 30, generator=g) * 3
    p = 0.7
    probs = logits.softmax(-1)
    for row in range(4):
        sp, order = probs[row].sort(descending=True)
        k = int((sp.cumsum(0) < p).sum()) + 1  # smallest prefix with mass >= p
        nucleus = set(order[:k].tolist())
        kept = set(torch.isfinite(top_p_filter(logits[row : row + 1], p)[0]).nonzero().flatten().tolist())
        assert kept == nucleus
        for _ in range(100):
            assert int(next_token(logits[row : row + 1], top_p=p, generator=g)) in nucleus
    assert torch.equal(top_p_filter(logits, 1.0), logits) and torch.equal(top_k_filter(logits, 0), logits)


def test_greedy_and_repetition_penalty():
    logits = torch.tensor([[1.0, 3.0, -2.0]])
    assert int(next_token(logits, temperature=0.0)) == 1
    pen = repetition_penalty(logits, torch.tensor([[1, 2]]), 2.0)
    assert torch.allclose(pen, torch.tensor([[1.0, 1.5, -4.0]]))


class _Counter:
    """A toy decoder whose next token is always (last token + 1) mod 5."""

    def __init__(self) -> None:
        self.calls = 0

    def _logits(self, last):
        return torch.nn.functional.one_hot((last + 1) % 5, 5).float() * 10

    def prefill(self, ids):
        return self._logits(ids[:, -1])

    def step(self, ids):
        self.calls += 1
        return self._logits(ids[:, -1])


def test_generate_streams_batches_and_stops():
    dec = _Counter()
    toks = list(generate(dec, torch.tensor([[0], [2]]), 6, temperature=0.0))
    assert torch.stack(toks, 1).tolist() == [[1, 2, 3, 4, 0, 1], [3, 4, 0, 1, 2, 3]]
    assert dec.calls == 5  # no forward pass after the last token
    stopped = list(generate(_Counter(), torch.tensor([[0]]), 10, temperature=0.0,
                            finished=lambda h: (h[:, -1] == 3)))
    assert [int(t) for t in stopped] == [1, 2, 3]


class _Prompted:
    """Logits that depend on whether the context it read holds token 9 (a 'prompt'); it records what it read."""

    def __init__(self) -> None:
        self.read: list[list[int]] = []
        self.prompted = False

    def _logits(self, n: int) -> torch.Tensor:
        row = torch.tensor([0.0, 2.0, 0.0, float("-inf")]) if self.prompted else torch.tensor([1.0, 0.0, 0.0, 0.5])
        return row.expand(n, -1)

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        self.read.append(ids[0].tolist())
        self.prompted = bool((ids == 9).any())
        return self._logits(len(ids))

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        self.read.append(ids[0].tolist())
        return self._logits(len(ids))


def test_guidance_mixes_prompted_and_start_only_log_probabilities():
    ctx = torch.tensor([[0, 9], [0, 9]])
    lc = torch.tensor([0.0, 2.0, 0.0, float("-inf")]).log_softmax(-1)
    lu = torch.tensor([1.0, 0.0, 0.0, 0.5]).log_softmax(-1)
    for scale, want in ((1.0, lc), (0.0, torch.cat([lu[:3], lc[3:]])), (2.5, lu + 2.5 * (lc - lu))):
        cond, uncond = _Prompted(), _Prompted()
        got = GuidedDecoder(cond, uncond, scale).prefill(ctx)
        assert cond.read == [[0, 9]] and uncond.read == [[0]]  # the unconditional side reads the start token only
        want = torch.where(torch.isfinite(lc), want, lc)  # what the prompt forbids stays forbidden
        assert torch.equal(torch.isinf(got[0]), torch.isinf(want))
        assert torch.allclose(got[0][:3], want[:3], atol=1e-6)
        GuidedDecoder(cond, uncond, scale).step(torch.tensor([[1], [1]]))
        assert cond.read[-1] == uncond.read[-1] == [1]  # both read every new token
    sharper = GuidedDecoder(_Prompted(), _Prompted(), 3.0).prefill(ctx).softmax(-1)[0, 1]
    assert sharper > lc.exp()[1] > lu.exp()[1]


def test_guide_is_a_no_op_at_one_and_needs_a_prompt():
    dec = _Prompted()
    assert guide(dec, _Prompted, torch.tensor([[0]]), 1.0) is dec
    with pytest.raises(ConfigError, match="--guidance needs a prompt"):
        guide(dec, _Prompted, torch.tensor([[0]]), 2.0)
    with pytest.raises(ConfigError, match="--guidance must be a finite number >= 0"):
        DecodingOptions(guidance=-1.0)


@pytest.mark.parametrize("family", ["rnn", "gpt"])
def test_token_families_decode_the_guided_distribution(family):
    import genlab
    from genlab.core import DataSpec
    from genlab.data.tokens import train_char

    tok = train_char(["abcdefgh"])
    spec = DataSpec(kind="text", shape=(10,), form="tokens", levels=tok.vocab_size)
    opts = {"n_layer": 1, "hidden": 16, "n_embd": 8} if family == "rnn" else {"n_layer": 1, "n_head": 2, "n_embd": 16}
    model = genlab.create(family, spec, **opts).eval()
    model.attach({"tokenizer": tok})
    plain = model.sample(3, generator=torch.Generator().manual_seed(0), prompt="ab", max_tokens=6)
    same = model.sample(3, generator=torch.Generator().manual_seed(0), prompt="ab", max_tokens=6, guidance=1.0)
    assert torch.equal(plain, same)
    bos = model.config.bos_id
    with torch.no_grad():
        lc = model.decoder(1).prefill(torch.tensor([[bos, *tok.encode("ab").tolist()]])).log_softmax(-1)
        lu = model.decoder(1).prefill(torch.tensor([[bos]])).log_softmax(-1)
    for scale in (0.0, 3.0):
        x = model.sample(1, prompt="ab", max_tokens=1, temperature=0.0, guidance=scale)
        assert int(x[0, 2]) == int((lu + scale * (lc - lu)).argmax())
    with pytest.raises(ConfigError, match="--guidance needs a prompt"):
        model.sample(1, guidance=2.0)
