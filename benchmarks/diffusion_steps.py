"""Diffusion benchmark: the quality/speed curve of each sampler over the number of steps, guided-sample accuracy,
the variational bound, and fp32 vs bf16 training speed.

    OMP_NUM_THREADS=2 python benchmarks/diffusion_steps.py --data mnist --budget 15m

1. Training speed: steps/s at fp32 and bf16 over ``--speed-steps`` steps (after 3 untimed warm-up steps).
2. Trains ``diffusion`` on ``--data`` for ``--budget`` of wall-clock (or reuses ``--run``).
3. For every sampler (``--samplers``) and number of steps (``--steps``): ``--n`` class-balanced samples, saved as
   ``benchmarks/out/diffusion/<sampler>-<steps>.png``, with the wall-clock per 64 samples; for step counts in
   ``--fid-steps`` also ``--fid-samples`` samples scored against the test split with the evaluation kit's
   classifier features (FID and KID; skipped with a note when the kit or a classifier for the data is missing).
4. Guided samples at each ``--guidance`` scale: the kit classifier's accuracy on the requested labels.
5. The test-set variational bound in bits/dim on the first ``--eval-examples`` test images.

Prints tables and writes ``benchmarks/out/diffusion_steps.json``. Model options go through ``--set key=value``
(e.g. ``--set model_channels=16``); ``--speed-steps 0`` skips the speed probe.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

import genlab
from _common import OUT, print_table, train_speed, write_results  # benchmarks/_common.py (scripts run from any cwd)
from genlab.api import test_split
from genlab.metrics.likelihood import likelihood_report
from genlab.report.grids import save_grid


class Scorer:
    """The evaluation kit's classifier features for ``data`` (FID/KID/accuracy), or a note why not."""

    def __init__(self, data: str, test_x: torch.Tensor) -> None:
        self.note = ""
        try:
            from genlab.metrics import distribution, features

            self.mi = distribution
            self.net = features.feature_net("classifier", data)
            self.real, _ = features.reference_features(self.net, test_x)
        except Exception as e:  # the kit may be absent or have no classifier for this data
            self.net = None
            self.note = f"skipped: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x, lambda *a: None, "samples")

    def quality(self, x: torch.Tensor) -> dict[str, Any]:
        if self.net is None:
            return {"fid": None, "note": self.note}
        feats, _ = self.features(x)
        kid_size = min(len(x), len(self.real), 1000)
        kid = self.mi.kid(self.real, feats, subsets=50, subset_size=kid_size)
        return {"fid": self.mi.fid(self.real, feats), "kid": kid[0] if isinstance(kid, tuple) else kid}

    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float | str:
        if self.net is None:
            return self.note
        _, probs = self.features(x)
        return self.mi.class_accuracy(probs, labels)


def draw(model: Any, n: int, seed: int, batch: int = 64, **options: Any) -> tuple[torch.Tensor, float]:
    """``n`` class-balanced samples (labels ``i mod K``) in batches, and the wall-clock seconds they took."""
    k = model.spec.num_classes if model.conditional else 0
    out, t0 = [], time.perf_counter()
    for lo in range(0, n, batch):
        m = min(batch, n - lo)
        labels = (torch.arange(lo, lo + m) % k) if k else None
        out.append(genlab.sample(model, m, label=labels, seed=seed + lo, progress=False, **options))
    return torch.cat(out), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--budget", default="15m", help="training wall-clock")
    ap.add_argument("--run", type=Path, default=None, help="reuse this trained run instead of training")
    ap.add_argument("--run-dir", type=Path, default=Path("runs/bench-diffusion"), help="where to train")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="model/trainer option (repeatable), e.g. model_channels=16")
    ap.add_argument("--samplers", default="ddpm,ddim,dpmpp_2m")
    ap.add_argument("--steps", default="10,25,50,250")
    ap.add_argument("--n", type=int, default=64, help="samples per (sampler, steps) for grid and timing")
    ap.add_argument("--fid-samples", type=int, default=256)
    ap.add_argument("--fid-steps", default="10,25,50", help="step counts to score ('' = none)")
    ap.add_argument("--guidance", default="0,1,3")
    ap.add_argument("--guided-samples", type=int, default=200)
    ap.add_argument("--guided-steps", type=int, default=25)
    ap.add_argument("--guided-sampler", default="dpmpp_2m")
    ap.add_argument("--eval-examples", type=int, default=200)
    ap.add_argument("--speed-steps", type=int, default=20)
    args = ap.parse_args()
    options: dict[str, Any] = {"data": args.data}
    for kv in args.set:
        key, _, value = kv.partition("=")
        options[key.replace("-", "_")] = value
    grids = OUT / "diffusion"
    grids.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"data": args.data, "options": options, "budget": args.budget}

    if args.speed_steps > 0:
        row = {f"{p} steps/s": train_speed("diffusion", options, p, args.speed_steps) for p in ("fp32", "bf16")}
        row["bf16 speed-up"] = row["bf16 steps/s"] / row["fp32 steps/s"]
        results["train_speed"] = row
        print_table(f"diffusion train speed, {args.data}", [row])

    if args.run is None:
        run = genlab.train("diffusion", out=args.run_dir, overwrite=True, budget=args.budget, quiet=False,
                           **options)
        run_path = Path(run.path)
        results["training"] = {k: run.summary[k] for k in ("step", "elapsed", "steps_per_s")}
    else:
        run_path = args.run
    results["run"] = str(run_path)
    model = genlab.load(run_path, device="cpu").model
    test = test_split(run_path)
    scorer = Scorer(args.data, test.x)

    fid_steps = {int(s) for s in args.fid_steps.split(",") if s}
    rows = []
    for name in args.samplers.split(","):
        for steps in (int(s) for s in args.steps.split(",")):
            if steps > model.config.num_timesteps:
                continue
            x, secs = draw(model, args.n, seed=0, sampler=name, steps=steps)
            save_grid(x, grids / f"{name}-{steps}.png", nrow=model.spec.num_classes or None)
            row: dict[str, Any] = {"sampler": name, "steps": steps, "s per 64": secs * 64 / args.n}
            if steps in fid_steps and args.fid_samples > 0:
                xs, _ = draw(model, args.fid_samples, seed=10_000, sampler=name, steps=steps)
                row.update(scorer.quality(xs))
            rows.append(row)
            print_table("samplers", rows[-1:])
    results["samplers"] = rows
    results["fid_note"] = (f"FID/KID on the kit's classifier features, {args.fid_samples} samples vs the test split; "
                           "FID is biased upward at small N, compare within this table only")
    print_table(f"quality/speed, {args.data}", rows)

    guided = []
    if model.conditional:
        for w in (float(g) for g in args.guidance.split(",")):
            x, secs = draw(model, args.guided_samples, seed=20_000, sampler=args.guided_sampler,
                           steps=args.guided_steps, guidance=w)
            labels = torch.arange(args.guided_samples) % model.spec.num_classes
            save_grid(x[:100], grids / f"guidance-{w:g}.png", nrow=model.spec.num_classes)
            guided.append({"guidance": w, "accuracy": scorer.accuracy(x, labels),
                           "s per 64": secs * 64 / args.guided_samples})
        print_table("classifier-free guidance", guided)
    results["guidance"] = guided

    lik = likelihood_report(model, test.head(args.eval_examples), batch_size=50)
    results["likelihood"] = lik
    print_table("variational bound (test)", [{"bits/dim (bound)": lik["bits_per_dim"], "n": lik["n_examples"]}])
    print(f"wrote {write_results('diffusion_steps', results)} and grids in {grids}")


if __name__ == "__main__":
    main()
