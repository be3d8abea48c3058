"""Train the shipped per-dataset classifiers: ``python -m genlab.metrics.train_classifier mnist digits``.

Each is a :class:`~genlab.metrics.classifier.DigitCNN` trained on the dataset's training split only (random
shifts of up to 2 pixels as augmentation, AdamW, cosine decay, fixed seed, CPU). Its weights go to
``genlab/metrics/weights/classifier-<data>.safetensors`` and its test-split accuracy to ``classifiers.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from genlab.config import build
from genlab.data import Dataset
from genlab.metrics.classifier import INDEX, DigitCNN, weights_root
from genlab.modalities.image import ImageDataConfig, load_images

#: epochs per dataset (digits is small: more passes over it take less time than 12 over mnist)
EPOCHS = {"mnist": 30, "digits": 100}


def shift(x: torch.Tensor, g: torch.Generator, s: int) -> torch.Tensor:
    """Translate each image by up to ``s`` pixels (zero padding)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (s, s, s, s))
    offs = torch.randint(0, 2 * s + 1, (b, 2), generator=g).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offs)])


@torch.no_grad()
def accuracy(net: DigitCNN, data: Dataset, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``net`` on a labelled split."""
    net.eval()
    assert data.y is not None
    hits = sum(int((net(data.x[i : i + batch_size]).argmax(1) == data.y[i : i + batch_size]).sum())
               for i in range(0, len(data), batch_size))
    return hits / len(data)


def train_one(data: str, epochs: int, seed: int = 0) -> dict[str, Any]:
    """Train, save and describe the classifier of one built-in dataset."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    splits = load_images(build(ImageDataConfig, {"data": data}))
    train, test = splits.train, splits.test
    assert train.y is not None
    c, h, _ = train.spec.shape
    net = DigitCNN(c, train.spec.num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    bs = 64
    steps = epochs * (len(train) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(train), generator=g)
        for k in range(len(train) // bs):
            idx = perm[k * bs : (k + 1) * bs]
            x = shift(train.x[idx], g, 2 if h >= 16 else 1)
            loss = F.cross_entropy(net(x), train.y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        print(f"{data} epoch {epoch + 1}/{epochs} loss {float(loss.detach()):.4f} test acc {accuracy(net, test):.4f}",
              flush=True)
    acc = accuracy(net, test)
    root = weights_root()
    root.mkdir(parents=True, exist_ok=True)
    fname = f"classifier-{data}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / fname))
    return {"file": fname, "test_accuracy": acc, "n_test": len(test), "n_train": len(train),
            "shape": list(train.spec.shape), "num_classes": train.spec.num_classes, "feature_dim": 128,
            "epochs": epochs, "seed": seed, "train_seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="*", default=["mnist", "digits"])
    ap.add_argument("--epochs", type=int, default=None, help="default: 30 for mnist, 100 for digits")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    index_path = weights_root() / INDEX
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    for data in args.datasets:
        index[data] = train_one(data, args.epochs or EPOCHS.get(data, 12))
        print(data, index[data], flush=True)
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
