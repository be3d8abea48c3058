"""Test bits/dim of the 8-bit data for the likelihood families (flow, PixelCNN, VAE bound) after a fixed budget each.

    OMP_NUM_THREADS=2 python benchmarks/likelihood_table.py --data mnist --budget 10m
    OMP_NUM_THREADS=2 python benchmarks/likelihood_table.py --data digits --budget 10m

trains each family once (same seed and split, wall-clock ``--budget`` each, one after the other), evaluates test
bits/dim with the one shared definition (``genlab.metrics.likelihood``: ``-log2 P(x) / D`` of the 8-bit pixels; flows
report the dequantization bound, the VAE its IWAE bound, PixelCNN the exact value), times sampling, and writes
``benchmarks/out/likelihood_<data>.json``, the runs (with ``samples.png`` grids) under
``benchmarks/out/likelihood-<data>/`` and a table on stdout. Published full-MNIST numbers are stored for reference.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

import genlab
from _common import OUT, print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)

#: model and trainer options per family, sized for a few CPU minutes (the command line cannot change them)
OPTIONS: dict[str, dict[str, Any]] = {
    "flow": {"levels": 2, "steps": 8, "hidden": 64, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100},
    "pixelcnn": {"hidden": 48, "layers": 6, "kernel": 5, "batch_size": 32, "lr": 1e-3},
    "vae": {"batch_size": 64},
}
#: evaluation-time model options (tighter bounds)
EVAL_OPTIONS: dict[str, dict[str, Any]] = {"flow": {"eval_samples": 8}, "vae": {"iwae_k": 200}}
PUBLISHED = {"note": "full MNIST (60,000 train images), GPU hours, dequantized bits/dim",
             "RealNVP": 1.06, "Glow": 1.05, "FFJORD": 0.99, "PixelCNN (gated, arXiv:1606.05328)": None}


def sample_speed(model: genlab.GenerativeModel, n: int, **options: Any) -> float:
    """Samples per second for one call drawing ``n`` samples."""
    t = time.perf_counter()
    genlab.sample(model, n, seed=1, **options)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist", help="built-in image dataset (mnist, digits) or an image path")
    ap.add_argument("--budget", default="10m", help="training wall-clock time per family, e.g. 10m or 30s")
    ap.add_argument("--families", default="flow,pixelcnn,vae", help="comma-separated likelihood families")
    ap.add_argument("--max-examples", type=int, default=None, help="evaluate on the first N test images only")
    ap.add_argument("--speed-samples", type=int, default=16, help="samples drawn to time sampling")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    folder = OUT / f"likelihood-{args.data.replace('/', '_')}"
    rows, details = [], {}
    for family in args.families.split(","):
        opts = dict(OPTIONS.get(family, {}))
        run = genlab.train(family, args.data, out=folder / family, overwrite=True, budget=args.budget, quiet=True,
                           seed=args.seed, eval_every=0, device="cpu", **opts)
        t = time.perf_counter()
        res = genlab.evaluate(run.path, max_examples=args.max_examples, samples=0,
                              **EVAL_OPTIONS.get(family, {}))
        eval_s = time.perf_counter() - t
        model = genlab.load(run.path, device="cpu").model
        speed = {"samples_per_s": sample_speed(model, args.speed_samples)}
        if family == "pixelcnn":  # the vertical-stack cache against full recomputation, on a few samples
            speed["samples_per_s_uncached"] = sample_speed(model, max(1, args.speed_samples // 8), cached=False)
        row = {"family": family, "likelihood": res.get("likelihood"), "bits_per_dim": res.get("bits_per_dim"),
               "nll_nats": res.get("nll_nats"), "steps": run.summary["step"],
               "train_s": run.summary["elapsed"], "eval_s": eval_s,
               "params": sum(p.numel() for p in model.parameters()), **speed}
        rows.append(row)
        details[family] = {"options": opts, "eval_options": EVAL_OPTIONS.get(family, {}), "eval": res,
                           "samples_png": str(folder / family / "samples.png")}
    path = write_results(f"likelihood_{args.data.replace('/', '_')}", {
        "data": args.data, "budget": args.budget, "seed": args.seed, "threads": torch.get_num_threads(),
        "definition": "test bits/dim = -log2 P(x) / (C*H*W) of the 8-bit pixels; flows: dequantization bound, "
                      "VAE: IWAE bound (both upper bounds on the NLL), PixelCNN: exact",
        "rows": rows, "details": details, "published_full_mnist": PUBLISHED})
    print_table(f"test bits/dim on {args.data}, {args.budget} of training per family", rows)
    print(f"wrote {path} and the runs in {folder}")


if __name__ == "__main__":
    main()
