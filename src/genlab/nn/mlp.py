"""Multi-layer perceptrons: the backbone of every family on tables (and any other vector data).

Networks only: they map tensors to tensors and know nothing of objectives, likelihoods or sampling.

References:
    Xu et al., "Modeling Tabular Data using Conditional GAN", 2019, arXiv:1907.00503 (residual generator).
    Kotelnikov et al., "TabDDPM", 2023, arXiv:2209.15421 (the MLP denoiser with time and label embeddings).
    Gorishniy et al., "Revisiting Deep Learning Models for Tabular Data", 2021, arXiv:2106.11959.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from genlab.nn.conv import Act, activation
from genlab.nn.unet import timestep_embedding


class MLP(nn.Module):
    """``in_dim → widths… → out_dim``: linear layers with an activation (and dropout) between them.

    Arguments:
        in_dim: input size.
        out_dim: output size.
        widths: hidden layer sizes (empty: one linear map).
        act: ``silu``, ``relu`` or ``lrelu`` (LeakyReLU 0.2).
        dropout: dropout after every hidden activation.
        spectral: spectral normalisation on every linear layer (GAN discriminators).
        zero_out: start the output layer at zero (a residual update or an identity flow starts as a no-op).
    """

    def __init__(self, in_dim: int, out_dim: int, widths: Sequence[int] = (256, 256), act: Act = "silu",
                 dropout: float = 0.0, spectral: bool = False, zero_out: bool = False) -> None:
        super().__init__()
        sn = spectral_norm if spectral else (lambda m: m)
        layers: list[nn.Module] = []
        d = in_dim
        for w in widths:
            layers += [sn(nn.Linear(d, w)), activation(act)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = w
        last = nn.Linear(d, out_dim)
        if zero_out:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(sn(last))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, out_dim)


class ResidualMLP(nn.Module):
    """CTGAN's generator body: each layer concatenates ``ReLU(LayerNorm(W h))`` to its input, then a linear map
    to ``out_dim`` (LayerNorm instead of BatchNorm, so a row's output does not depend on its batch).

    Arguments:
        in_dim: input size.
        out_dim: output size.
        widths: sizes of the residual layers (each adds its width to the running feature size).
    """

    def __init__(self, in_dim: int, out_dim: int, widths: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        d = in_dim
        for w in widths:
            self.layers.append(nn.Sequential(nn.Linear(d, w), nn.LayerNorm(w), nn.ReLU()))
            d += w
        self.out = nn.Linear(d, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for layer in self.layers:
            h = torch.cat([layer(h), h], dim=1)  # (B, d + w)
        return self.out(h)


class DenoiserMLP(nn.Module):
    """TabDDPM's denoiser: ``h = W x + e(t) + e(y)``, then an MLP; maps a noisy row and its timestep (and label) to
    a row-shaped output.

    Arguments:
        dim: row size (input and output).
        widths: hidden layer sizes.
        emb_dim: size of the input projection and of the time/label embeddings.
        num_classes: size of the label embedding table (0 = unconditional).
        dropout: dropout in the MLP.
    """

    def __init__(self, dim: int, widths: Sequence[int] = (256, 256), emb_dim: int = 128, num_classes: int = 0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.proj = nn.Linear(dim, emb_dim)
        self.time = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label = nn.Embedding(num_classes, emb_dim) if num_classes else None
        self.mlp = MLP(emb_dim, dim, widths, act="silu", dropout=dropout)

    def forward(self, x: Tensor, time: Tensor, label: Tensor | None = None) -> Tensor:
        """``x (B, D)``, float timesteps ``time (B,)``, labels ``(B,)`` → ``(B, D)``."""
        h = self.proj(x) + self.time(timestep_embedding(time, self.emb_dim))
        if self.label is not None and label is not None:
            h = h + self.label(label)
        return self.mlp(torch.nn.functional.silu(h))


class FlatDenoiser(nn.Module):
    """A vector denoiser applied to inputs of any shape: ``(B, *S)`` is flattened to ``(B, ∏S)`` and back.

    Arguments:
        net: a denoiser ``(x (B, D), time (B,), label) → (B, D)`` such as :class:`DenoiserMLP`.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, time: Tensor, label: Tensor | None = None) -> Tensor:
        """``x (B, *S)``, float timesteps ``time (B,)``, labels ``(B,)`` → ``(B, *S)``."""
        return self.net(x.flatten(1), time, label).view_as(x)
