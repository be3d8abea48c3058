"""Foundation benchmark: VAE and GAN on mnist with a wall-clock budget each, and fp32 vs bf16 train speed.

    python benchmarks/foundation.py --budget 5m --iwae-k 1000

Prints tables and writes benchmarks/out/foundation.json plus sample grids. Speed is measured first, one
configuration at a time, as steps/s over ``--speed-steps`` steps after 5 untimed warm-up steps.
"""

from __future__ import annotations

import argparse
import shutil
import time

import torch

import genlab
from _common import OUT, print_table, train_speed, write_results  # benchmarks/_common.py (scripts run from any cwd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", default="5m", help="training wall-clock per family")
    ap.add_argument("--iwae-k", type=int, default=1000, help="importance samples for the VAE test NLL")
    ap.add_argument("--speed-steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--families", default="vae,gan")
    args = ap.parse_args()
    families = args.families.split(",")

    speed_rows = []
    for fam in families:
        row = {"family": fam}
        for prec in ("fp32", "bf16"):
            row[f"{prec} steps/s"] = train_speed(fam, {"data": "mnist", "batch_size": args.batch_size}, prec,
                                                 args.speed_steps, warmup=5)
        row["bf16 speed-up"] = row["bf16 steps/s"] / row["fp32 steps/s"]
        speed_rows.append(row)
    print_table(f"train speed, mnist, batch {args.batch_size}", speed_rows)

    quality_rows = []
    for fam in families:
        out = OUT / f"{fam}-mnist"
        if out.exists():
            shutil.rmtree(out)
        run = genlab.train(fam, "mnist", out=out, budget=args.budget, batch_size=args.batch_size, quiet=True)
        row = {"family": fam, "steps": run.summary["step"], "train s": run.summary["elapsed"],
               "params": sum(p.numel() for p in run.model.parameters())}
        if run.model.likelihood_bound or run.model.exact_likelihood:
            t0 = time.perf_counter()
            res = genlab.evaluate(out, iwae_k=args.iwae_k)
            row.update({"test NLL nats": res["nll_nats"], "± sem": res["nll_nats_sem"],
                        "bits/dim": res["bits_per_dim"], "eval s": time.perf_counter() - t0,
                        "k": args.iwae_k})
        shutil.copy(out / "samples.png", OUT / f"foundation-{fam}-samples.png")
        quality_rows.append(row)
    print_table(f"mnist, {args.budget} per family", quality_rows)
    path = write_results("foundation", {"budget": args.budget, "speed": speed_rows, "quality": quality_rows,
                                        "command": "python benchmarks/foundation.py " + " ".join(
                                            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())})
    print(f"wrote {path}")


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
