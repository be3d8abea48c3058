"""Export-only ``nn.Module`` wrappers around each family's sampling network: plain tensor inputs and outputs, no
generators, no Python-side state, no in-place caches — what ``torch.onnx.export`` traces into a graph.

They reuse the family's own modules and weights and change nothing in the family files; where the family's
sampling code cannot be traced as it is they say why and do the same arithmetic:

* the flow's LU 1×1 convolution inverts its weight with ``torch.linalg.inv`` on every call (no ONNX operator):
  :class:`FlowInverse` inverts it once, in float64, into a buffer;
* the flow samples its prior with a torch generator inside the network: :class:`FlowInverse` takes the standard
  normal noise and the temperature as inputs instead;
* GPT decodes into a pre-allocated, in-place key/value cache: :class:`GPTDecode` takes the past keys and values as
  inputs and returns them extended (the ONNX convention); LoRA adapters are merged into the weights first.

References:
    Kingma & Dhariwal, "Glow", 2018, arXiv:1807.03039 (the invertible 1×1 convolution).
    van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016, arXiv:1606.05328.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.flows import Bijection, Chain
from genlab.flows.layers import InvertibleLinear
from genlab.nn.conv import cat_cond
from genlab.nn.transformer import TransformerLM, apply_rotary


class LatentDecoder(nn.Module):
    """``(z (B, L)[, label (B,)]) → (B, C', H, W)``: the VAE's decoder parameters (``VAE._decode_params``) or the
    GAN's image in [-1, 1] (``GAN.generate``), holding only the decoder and its class embedding.

    Arguments:
        net: the family's :class:`~genlab.nn.conv.ConvDecoder`.
        emb: its class embedding (None for an unconditional model).
        tanh: squash the output with tanh (the GAN).
    """

    def __init__(self, net: nn.Module, emb: nn.Module | None, tanh: bool) -> None:
        super().__init__()
        self.net, self.emb, self.tanh = net, emb, tanh

    def forward(self, z: Tensor, label: Tensor | None = None) -> Tensor:
        out = self.net(cat_cond(z, cast(nn.Embedding | None, self.emb), label))
        return torch.tanh(out) if self.tanh else out


def _chain_inverse(chain: Chain, z: Tensor, ctx: Tensor | None, inverse_of: Any) -> Tensor:
    """``chain.inverse(z, ctx)`` with each LU 1×1 convolution applied through its precomputed inverse
    (``inverse_of(layer)``)."""
    for layer in reversed(cast(Sequence[Bijection], chain.layers)):
        if isinstance(layer, InvertibleLinear):
            z = torch.einsum("ij,bj...->bi...", inverse_of(layer), z)
        else:
            z = layer.inverse(z, ctx)
    return z


class FlowInverse(nn.Module):
    """``(eps (B, D), temperature (1,)[, label (B,)]) → data in model space``: the flow's sampling direction.

    Images: for each scale from the top, ``z_l = μ_l + T · σ_l · ε_l`` under the (split) prior given the scales
    above, then the inverse of that scale's steps (:meth:`genlab.models.flow.MultiScaleFlow.inverse`); ``ε`` holds
    the scales' noises in ``MultiScaleFlow.z_shapes`` order. Vectors: the chain's inverse of ``T · ε``.
    """

    def __init__(self, flow: Any) -> None:
        super().__init__()
        self.net, self.emb = flow.net, flow.emb  # not the (variational) dequantizer: sampling does not use it
        self._buffer: dict[int, str] = {}
        for i, m in enumerate(m for m in self.net.modules() if isinstance(m, InvertibleLinear)):
            self.register_buffer(f"inverse_{i}", torch.linalg.inv(m.weight().detach().double()).to(m.lower.dtype))
            self._buffer[id(m)] = f"inverse_{i}"

    def _inverse_of(self, layer: nn.Module) -> Tensor:
        return cast(Tensor, getattr(self, self._buffer[id(layer)]))

    def forward(self, eps: Tensor, temperature: Tensor, label: Tensor | None = None) -> Tensor:
        ctx = None if self.emb is None or label is None else self.emb(label)
        net: Any = self.net
        n = eps.shape[0]
        if not hasattr(net, "z_shapes"):  # vector flow
            return _chain_inverse(net.chain, temperature * eps, ctx, self._inverse_of)
        pieces = eps.split([math.prod(s) for s in net.z_shapes], dim=1)
        h: Tensor | None = None
        for level in reversed(range(len(net.blocks))):
            prior, shape = net.priors[level], net.z_shapes[level]
            mean, log_std = prior(n, ctx) if h is None else prior(h, ctx)
            zl = mean + temperature * log_std.exp() * pieces[level].reshape(n, *shape)
            h = zl if h is None else torch.cat([h, zl], dim=1)
            h = _chain_inverse(net.blocks[level], h, ctx, self._inverse_of)
        assert h is not None
        return h


class UNetStep(nn.Module):
    """``(x (B, C, H, W), t (B,) int64[, label (B,)]) → network output``: one call of the diffusion model's U-Net
    (:meth:`genlab.models.diffusion.Diffusion.forward_net`); the sampler loop stays in numpy."""

    def __init__(self, diffusion: Any) -> None:
        super().__init__()
        self.diffusion = diffusion

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        return self.diffusion.forward_net(x, t, label)


class PixelCNNVertical(nn.Module):
    """``(x (B, C, i+1, W) in model space[, label]) → (layers, B, 2h, 1, W)``: every layer's vertical-stack
    contribution to the horizontal stack at row ``i``, from the rows above it (the vertical stack is causal, so
    the rows below need not exist)."""

    def __init__(self, pixelcnn: Any) -> None:
        super().__init__()
        self.pixelcnn = pixelcnn

    def forward(self, x: Tensor, label: Tensor | None = None) -> Tensor:
        from_v = self.pixelcnn.net.vertical(x, self.pixelcnn._ctx(label))
        return torch.stack([f[:, :, -1:] for f in from_v])


class PixelCNNHorizontal(nn.Module):
    """``(x (B, C, 1, j+1) in model space, from_v (layers, B, 2h, 1, j+1)) → (B, C, P)``: the output parameters of
    pixel ``j`` of a row from the row's pixels up to it and the vertical contributions."""

    def __init__(self, pixelcnn: Any) -> None:
        super().__init__()
        self.pixelcnn = pixelcnn

    def forward(self, x: Tensor, from_v: Tensor) -> Tensor:
        net = self.pixelcnn.net
        h = x
        for layer, fv in zip(net.layers, from_v.unbind(0), strict=True):
            h = layer.horizontal(h, fv)
        out = net.head2(F.relu(net.head1(F.relu(h))))  # (B, C·P, 1, j+1)
        return out[:, :, 0, -1].reshape(x.shape[0], net.channels, net.params)


class GPTDecode(nn.Module):
    """The transformer with an explicit key/value cache.

    ``forward(ids (B, T)[, past_k, past_v (layers, B, heads, P, head_dim)])`` →
    ``(logits, k, v)`` with the cache extended to ``P + T`` positions; the new tokens sit at positions
    ``P … P+T-1`` and token ``i`` attends to keys ``j ≤ P + i``. ``all_logits`` (the prefill graph) returns
    logits at every new position ``(B, T, V)``, otherwise at the last one ``(B, V)`` (the decode graph).

    Arguments:
        net: the GPT's :class:`~genlab.nn.transformer.TransformerLM` (LoRA adapters merged).
        all_logits: return logits at every position.
    """

    def __init__(self, net: TransformerLM, all_logits: bool) -> None:
        super().__init__()
        self.net, self.all_logits = net, all_logits

    def forward(self, ids: Tensor, past_k: Tensor | None = None, past_v: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        net = self.net
        b, t = ids.shape
        p = 0 if past_k is None else past_k.shape[3]
        pos = torch.arange(t, device=ids.device) + p  # (T,) absolute positions
        x = net.wte(ids)  # (B, T, C)
        rope = None
        if net.wpe is not None:
            x = x + net.wpe(pos)
        else:
            rope = (net.rope_cos[pos], net.rope_sin[pos])
        nh, hs = net.n_head, net.head_dim
        c = nh * hs
        visible = torch.arange(p + t, device=ids.device)[None, :] <= pos[:, None]  # (T, P+T)
        ks, vs = [], []
        for i, blk in enumerate(cast(Sequence[Any], net.h)):
            attn = blk.attn
            q, k, v = F.linear(blk.ln_1(x), attn.c_attn.weight, attn.c_attn.bias).split(c, dim=2)
            q, k, v = (z.view(b, t, nh, hs).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
            if rope is not None:
                q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
            if past_k is not None and past_v is not None:
                k, v = torch.cat([past_k[i], k], dim=2), torch.cat([past_v[i], v], dim=2)  # (B, nh, P+T, hs)
            ks.append(k)
            vs.append(v)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, P+T)
            att = att.masked_fill(~visible, float("-inf")).softmax(dim=-1)
            y = (att @ v).transpose(1, 2).reshape(b, t, c)
            x = x + F.linear(y, attn.c_proj.weight, attn.c_proj.bias)
            mlp = blk.mlp
            hid = F.gelu(F.linear(blk.ln_2(x), mlp.c_fc.weight, mlp.c_fc.bias), approximate="tanh")
            x = x + F.linear(hid, mlp.c_proj.weight, mlp.c_proj.bias)
        if not self.all_logits:
            x = x[:, -1]
        return net.lm_head(net.ln_f(x)), torch.stack(ks), torch.stack(vs)


class RNNStep(nn.Module):
    """The recurrent language model with its state as inputs and outputs:
    ``(ids (B, T), h, c (layers, B, hidden)) → (logits (B, T, V), h, c)``: next-token logits after each id and the
    state after the last; the GRU's graph has no
    ``c`` (a zero state starts a sequence, as :class:`~genlab.nn.rnn.RNNLM` does with ``state=None``).

    Arguments:
        net: the rnn family's :class:`~genlab.nn.rnn.RNNLM`.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.lstm = isinstance(cast(Any, net).rnn, nn.LSTM)

    def forward(self, ids: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, ...]:
        logits, state = self.net(ids, (h, c) if self.lstm else h)
        if self.lstm:
            return logits, state[0], state[1]
        return logits, state


class SeqVAEStart(nn.Module):
    """``z (B, latent) → h (layers, B, hidden)``: the state the sequence VAE's decoder starts from."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, z: Tensor) -> Tensor:
        return cast(Any, self.decoder).initial_state(z)


class SeqVAEStep(nn.Module):
    """``(ids (B, T), z (B, latent), h (layers, B, hidden)) → (logits (B, T, V), h)``: the sequence VAE's
    latent-conditioned GRU decoder, its state as input and output.

    Arguments:
        decoder: the vae family's :class:`~genlab.nn.rnn.SeqDecoder`.
    """

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, ids: Tensor, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        logits, state = self.decoder(ids, z, h)
        return logits, state


class GridDenoiser(nn.Module):
    """``x_t (B, V, T) int64 → logits (B, V, T, L)``: grid diffusion's transformer, which predicts the clean value of
    every cell of a partly masked grid (the mask is the value ``L``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, self.net(x)).float()


class OneHotDecoder(nn.Module):
    """``(z (B, L), label (B,)) → decoder parameters``: a decoder fed ``[z, one_hot(label)]`` (the M2
    semi-supervised VAE's ``p(x | y, z)``).

    Arguments:
        net: the family's :class:`~genlab.nn.conv.ConvDecoder`.
        classes: the number of classes (the one-hot width).
    """

    def __init__(self, net: nn.Module, classes: int) -> None:
        super().__init__()
        self.net, self.classes = net, classes

    def forward(self, z: Tensor, label: Tensor) -> Tensor:
        return cast(Tensor, self.net(torch.cat([z, F.one_hot(label.long(), self.classes).to(z.dtype)], dim=1)))
