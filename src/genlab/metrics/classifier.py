"""The small per-dataset CNN classifier whose penultimate layer gives domain features and whose softmax gives
class predictions (Inception Score, class accuracy, mode coverage) for the built-in image datasets.

Weights are trained by ``python -m genlab.metrics.train_classifier`` on each dataset's training split and shipped
in ``genlab/metrics/weights/`` as ``classifier-<data>.safetensors``, with the recorded test accuracy in
``classifiers.json``.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from genlab.errors import CapabilityError

WEIGHTS_DIR = "weights"
INDEX = "classifiers.json"


class DigitCNN(nn.Module):
    """Four 3×3 convs (16-16, pool, 32-32), a 4×4 adaptive average pool, a 128-d feature layer and a linear head.

    Arguments:
        channels: input channels.
        num_classes: number of classes.
        feature_dim: size of the penultimate (feature) layer.
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, feature_dim: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(32 * 16, feature_dim), nn.ReLU(),
        )
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)

    @staticmethod
    def prepare(x: Tensor) -> Tensor:
        """``uint8`` images → floats in [0, 1]."""
        return x.float() / 255.0

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features ``(B, feature_dim)`` of ``uint8`` images ``(B, C, H, W)``."""
        return self.body(self.prepare(x))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)`` of ``uint8`` images."""
        return self.head(self.drop(self.features(x)))


def weights_root() -> Path:
    """Folder of the shipped classifier weights (inside the installed package)."""
    return Path(str(resources.files("genlab.metrics"))) / WEIGHTS_DIR


def shipped() -> dict[str, dict[str, Any]]:
    """The index of shipped classifiers: ``data → {file, test_accuracy, shape, num_classes, …}``."""
    p = weights_root() / INDEX
    return json.loads(p.read_text()) if p.is_file() else {}


def load_classifier(data: str) -> tuple[DigitCNN, dict[str, Any], str]:
    """Load the shipped classifier of a built-in dataset (CPU, eval mode).

    Returns:
        (network, its index entry, a fingerprint of its weights file).

    Raises:
        CapabilityError: when no classifier is shipped for ``data``.
    """
    from safetensors.torch import load_file

    index = shipped()
    if data not in index:
        raise CapabilityError(f"no classifier is shipped for data '{data}' (there are: "
                              f"{', '.join(sorted(index)) or 'none'}); use the inception features instead")
    entry = index[data]
    path = weights_root() / entry["file"]
    net = DigitCNN(entry["shape"][0], entry["num_classes"], entry["feature_dim"])
    net.load_state_dict(load_file(str(path)))
    digest = hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()
    return net.eval(), entry, digest
