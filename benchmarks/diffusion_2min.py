"""Diffusion with its defaults for a short budget: does it follow the label, and which sampler is best?

    OMP_NUM_THREADS=2 python benchmarks/diffusion_2min.py --budget 2m --samples 500 --sampler-samples 200

Trains ``genlab train diffusion --data mnist --budget 2m`` (every option at its default), then

* draws ``--samples`` conditional samples with the default sampler (labels ``i mod 10``) and has the shipped mnist
  classifier (an independent CNN trained on real digits, ``genlab/metrics/weights``) label them: class accuracy
  overall and per class, the entropy of the predicted-class histogram (log2 10 = 3.32 bits when uniform), and
  how much the label changes the picture: the mean absolute pixel difference between samples drawn from the same
  noise for two different labels, against that between two different noises for the same label;
* counts degenerate samples: ``blob`` — more than 45 % of the pixels above 128 (real digits: at most ~35 %);
  ``noise`` — more than 25 % of the pixels in the mid range 64..191 (real digits: a few %);
* compares samplers on ``--sampler-samples`` samples: classifier FID against the 1,000 test digits (biased
  upwards at small N: compare within the table only) and class accuracy, for ``--samplers``.

Results go to ``benchmarks/out/diffusion_2min.json`` and the grids to ``benchmarks/out/diffusion-2min-*.png``.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch

import genlab
from _common import OUT, print_table, write_results  # benchmarks/_common.py
from genlab.metrics.distribution import fid
from genlab.metrics.features import feature_net


def degenerate(x: torch.Tensor) -> dict[str, float]:
    """Shares of saturated blobs and of noise fields among uint8 images ``(N, 1, H, W)``."""
    v = x.flatten(1).float()
    bright = (v > 128).float().mean(1)
    mid = ((v >= 64) & (v <= 191)).float().mean(1)
    return {"blob": float((bright > 0.45).float().mean()), "noise": float((mid > 0.25).float().mean())}


def label_scores(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    pred = probs.argmax(1)
    hist = np.bincount(pred.numpy(), minlength=10)
    share = hist / hist.sum()
    nz = share[share > 0]
    per_class = [float((pred[labels == c] == c).float().mean()) for c in range(10)]
    return {"class_accuracy": float((pred == labels).float().mean()), "per_class_accuracy": per_class,
            "histogram": hist.tolist(), "entropy_bits": float(-(nz * np.log2(nz)).sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="2m")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--sampler-samples", type=int, default=200)
    p.add_argument("--samplers", default="dpmpp_2m:10,ddim:10,dpmpp_2m:25,ddpm:25,ddpm:100")
    p.add_argument("--run-dir", default=str(OUT / "diffusion-2min"))
    p.add_argument("--reuse", action="store_true", help="score an existing run in --run-dir")
    args = p.parse_args()
    if args.reuse:
        run = genlab.load(args.run_dir, device="cpu")
        summary = {}
    else:
        run = genlab.train("diffusion", "mnist", out=args.run_dir, overwrite=True, budget=args.budget, quiet=True)
        summary = run.summary
    splits = run.modality.load(genlab.config.build(run.modality.config_cls, run.config["data"]), "image")
    clf = feature_net("classifier", "mnist", splits.test.spec)
    real_f, _ = clf(splits.test.x)

    n = args.samples
    labels = torch.arange(n) % 10
    t0 = time.perf_counter()
    x = genlab.sample(run, n, label=labels, seed=0, progress=False)
    sample_s = time.perf_counter() - t0
    genlab.api.save_samples(run, x[:100], OUT / "diffusion-2min-default.png")
    f, probs = clf(x)
    assert probs is not None
    main_row = {**label_scores(probs, labels), **degenerate(x), "fid_classifier": fid(real_f, f),
                "sample_s_per_100": sample_s / n * 100}
    # does the label change the picture? the same noise for labels 3 and 8, vs two noises for one label
    same_noise = [genlab.sample(run, 50, label=torch.full((50,), c), seed=1, progress=False).float() for c in (3, 8)]
    other_noise = genlab.sample(run, 50, label=torch.full((50,), 3), seed=2, progress=False).float()
    main_row["label_effect"] = float((same_noise[0] - same_noise[1]).abs().mean())
    main_row["noise_effect"] = float((same_noise[0] - other_noise).abs().mean())

    rows = []
    m = args.sampler_samples
    lab = torch.arange(m) % 10
    for spec in args.samplers.split(","):
        name, steps = spec.split(":")
        t0 = time.perf_counter()
        xs = genlab.sample(run, m, label=lab, seed=0, sampler=name, steps=int(steps), progress=False)
        dt = time.perf_counter() - t0
        fs, ps = clf(xs)
        assert ps is not None
        sc = label_scores(ps, lab)
        rows.append({"sampler": name, "steps": int(steps), "fid_classifier": fid(real_f, fs),
                     "class_accuracy": sc["class_accuracy"], **degenerate(xs), "s_per_100": dt / m * 100})
        genlab.api.save_samples(run, xs[:100], OUT / f"diffusion-2min-{name}-{steps}.png")
    print_table(f"diffusion, defaults, {args.budget} ({summary.get('step', '?')} steps, "
                f"{summary.get('precision', '?')}{', compiled' if summary.get('compile') else ''}), "
                f"{n} conditional samples", [{k: v for k, v in main_row.items() if not isinstance(v, list)}])
    print("per-class accuracy", [round(a, 2) for a in main_row["per_class_accuracy"]], "histogram",
          main_row["histogram"])
    print_table(f"samplers, {m} samples, classifier FID vs 1,000 test digits", rows)
    path = write_results("diffusion_2min", {"budget": args.budget, "train": summary, "config": run.config,
                                            "default_sampler": main_row, "samplers": rows,
                                            "log2_classes": math.log2(10)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
