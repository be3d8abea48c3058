"""Transformer backbone: the written-out CPU training attention equals the fused kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genlab.nn.transformer import TransformerLM, causal_attention_math


@pytest.mark.parametrize(("t", "s"), [(7, 7), (3, 9), (1, 5)])
def test_written_out_attention_equals_sdpa(t, s):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, t, 8, generator=g, dtype=torch.float64)
    k, v = (torch.randn(2, 3, s, 8, generator=g, dtype=torch.float64) for _ in range(2))
    mask = torch.ones(t, s, dtype=torch.bool).tril(diagonal=s - t)  # query i sits at absolute position s - t + i
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(causal_attention_math(q, k, v), ref, rtol=1e-12, atol=1e-12)


def test_training_and_inference_paths_give_the_same_logits():
    net = TransformerLM(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0).double().eval()
    idx = torch.randint(11, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fused = net(idx)  # inference: F.scaled_dot_product_attention
    written = net(idx)  # grad enabled on CPU: causal_attention_math
    torch.testing.assert_close(written.detach(), fused, rtol=1e-10, atol=1e-10)
