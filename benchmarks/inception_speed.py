"""Inception-v3 feature speed on this machine: genlab's fast eager copy vs the TorchScript file, and FID equality.

    OMP_NUM_THREADS=2 python benchmarks/inception_speed.py --n 250

Both networks embed the same two fixed image sets (the first ``n`` mnist test digits and the first ``n`` training
digits, 28×28 gray resized to 299×299), batch by batch in alternation so drifts in a shared machine's load hit
both alike. Reported: seconds per image of each and their ratio, the largest feature difference, and the FID
between the two sets computed from each network's features (the goal: equal within 0.1 % relative). A batch-size
sweep of the fast network follows (``--sweep``). Results go to ``benchmarks/out/inception_speed.json``.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import print_table, write_results  # benchmarks/_common.py
from genlab.config import build
from genlab.metrics import features as M
from genlab.metrics.distribution import fid
from genlab.modalities.image import ImageDataConfig, load_images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=250, help="images per set")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--sweep", default="25,100", help="extra batch sizes to time the fast network at")
    args = p.parse_args()
    s = load_images(build(ImageDataConfig, {"data": "mnist"}))
    sets = {"test": s.test.x[: args.n], "train": s.train.x[: args.n]}
    nets = {"torchscript": M.InceptionFeatures(M.inception_path(), "cpu", fast=False),
            "fast": M.InceptionFeatures(M.inception_path(), "cpu", fast=True)}
    for net in nets.values():  # warm-up (allocator, oneDNN primitive caches)
        net._features(sets["test"][:8])
    feats: dict[str, dict[str, list[torch.Tensor]]] = {k: {"test": [], "train": []} for k in nets}
    secs = dict.fromkeys(nets, 0.0)
    order = list(nets)
    for part in ("test", "train"):
        x = sets[part]
        for i, lo in enumerate(range(0, len(x), args.batch)):
            for name in order[i % 2 :] + order[: i % 2]:  # alternate which network goes first
                t0 = time.perf_counter()
                f, _ = nets[name]._features(x[lo : lo + args.batch])
                secs[name] += time.perf_counter() - t0
                feats[name][part].append(f.double())
            print(f"{part} batch {i}: " + ", ".join(f"{k} {secs[k]:.1f}s" for k in nets), flush=True)
    n_img = 2 * args.n
    out = {k: {p: torch.cat(v) for p, v in d.items()} for k, d in feats.items()}
    fids = {k: fid(d["test"], d["train"]) for k, d in out.items()}
    diff = max(float((out["fast"][p] - out["torchscript"][p]).abs().max()) for p in ("test", "train"))
    scale = float(out["torchscript"]["test"].abs().max())
    rows = [{"network": k, "s_per_image": secs[k] / n_img, "speedup": secs["torchscript"] / secs[k],
             "fid_test_vs_train": fids[k]} for k in nets]
    rel = abs(fids["fast"] - fids["torchscript"]) / fids["torchscript"]
    sweep = []
    for bs in [int(b) for b in args.sweep.split(",") if b]:
        x = sets["test"][: max(bs, 2 * bs if bs < 100 else bs)]
        t0 = time.perf_counter()
        for lo in range(0, len(x), bs):
            nets["fast"]._features(x[lo : lo + bs])
        sweep.append({"batch": bs, "s_per_image": (time.perf_counter() - t0) / len(x)})
    print_table(f"Inception-v3 features, {args.n} + {args.n} mnist digits, batch {args.batch}, "
                f"{torch.get_num_threads()} threads", rows)
    print(f"max |feature difference| {diff:.3g} (features up to {scale:.3g}); FID relative difference {rel:.2e}")
    print_table("fast network, batch size", sweep)
    path = write_results("inception_speed", {"n_per_set": args.n, "batch": args.batch, "rows": rows,
                                             "max_feature_diff": diff, "max_feature": scale,
                                             "fid_relative_difference": rel, "batch_sweep": sweep})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
