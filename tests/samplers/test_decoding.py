"""Token decoding: top-k / top-p never leave their sets, repetition penalty, greedy, stop conditions."""

from __future__ import annotations

import torch

from genlab.samplers.decoding import generate, next_token, repetition_penalty, top_k_filter, top_p_filter


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
