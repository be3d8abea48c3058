"""Recurrent backbones for token sequences: an LSTM/GRU language model, and the sequence encoder and
latent-conditioned decoder of a sequence VAE. Networks only: no objectives, no sampling."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

Cell = Literal["lstm", "gru"]
#: a recurrent state: ``(h, c)`` for an LSTM, ``h`` for a GRU, each ``(layers, B, hidden)``
State = Any


def recurrent(cell: Cell, n_in: int, hidden: int, layers: int, dropout: float = 0.0,
              bidirectional: bool = False) -> nn.LSTM | nn.GRU:
    """A batch-first multi-layer LSTM or GRU (dropout between layers only)."""
    cls = nn.LSTM if cell == "lstm" else nn.GRU
    return cls(n_in, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0,
               bidirectional=bidirectional)


class RNNLM(nn.Module):
    """Token embedding → multi-layer LSTM/GRU → (projection →) output head tied to the embedding.

    Arguments:
        vocab: vocabulary size.
        n_embd: embedding width.
        hidden: recurrent state width.
        layers: stacked recurrent layers.
        cell: ``lstm`` or ``gru``.
        dropout: dropout on embeddings, between layers and before the head.
        tie_weights: share the embedding with the output head (through a projection when widths differ).
    """

    def __init__(self, vocab: int, n_embd: int, hidden: int, layers: int, cell: Cell = "lstm",
                 dropout: float = 0.0, tie_weights: bool = True) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.drop = nn.Dropout(dropout)
        self.rnn = recurrent(cell, n_embd, hidden, layers, dropout)
        self.proj = nn.Linear(hidden, n_embd, bias=False) if tie_weights and hidden != n_embd else None
        self.head = nn.Linear(n_embd if tie_weights else hidden, vocab, bias=False)
        if tie_weights:
            self.head.weight = self.wte.weight

    def forward(self, ids: Tensor, state: State = None) -> tuple[Tensor, State]:
        """Next-token logits ``(B, T, V)`` of ids ``(B, T)`` and the state after them (None = zero state)."""
        h, state = self.rnn(self.drop(self.wte(ids)), state)  # (B, T, H)
        h = self.drop(h)
        if self.proj is not None:
            h = self.proj(h)
        return self.head(h), state


class SeqEncoder(nn.Module):
    """Embedding → bidirectional GRU → ``(μ, log σ²)`` of a Gaussian latent from the final states of both
    directions (the MOSES VAE's encoder)."""

    def __init__(self, vocab: int, n_embd: int, hidden: int, latent: int, layers: int = 1) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.rnn = recurrent("gru", n_embd, hidden, layers, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2 * latent)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters of ids ``(B, T)`` whose first ``lengths`` tokens are the sequence → each
        ``(B, latent)``."""
        packed = nn.utils.rnn.pack_padded_sequence(self.wte(ids), lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, h = self.rnn(packed)  # (2·layers, B, H)
        mu, logvar = self.head(torch.cat([h[-2], h[-1]], dim=-1)).chunk(2, dim=-1)
        return mu, logvar


class SeqDecoder(nn.Module):
    """A GRU language model conditioned on a latent ``z``: ``z`` sets the initial state of every layer and is
    concatenated to each input embedding (the MOSES VAE's decoder)."""

    def __init__(self, vocab: int, n_embd: int, hidden: int, latent: int, layers: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = layers
        self.wte = nn.Embedding(vocab, n_embd)
        self.rnn = recurrent("gru", n_embd + latent, hidden, layers, dropout)
        self.init = nn.Linear(latent, hidden)
        self.head = nn.Linear(hidden, vocab)

    def initial_state(self, z: Tensor) -> Tensor:
        """The state ``(layers, B, hidden)`` a latent ``(B, latent)`` starts the decoder in."""
        return self.init(z).unsqueeze(0).repeat(self.layers, 1, 1).contiguous()

    def forward(self, ids: Tensor, z: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Next-token logits ``(B, T, V)`` of input ids ``(B, T)`` given latents ``(B, latent)``, and the state."""
        x = torch.cat([self.wte(ids), z[:, None].expand(-1, ids.shape[1], -1)], dim=-1)
        h, state = self.rnn(x, self.initial_state(z) if state is None else state)
        return self.head(h), state
