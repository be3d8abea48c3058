"""The `genlab compare` benchmark: every image family on mnist with the same wall-clock budget, seed and split.

    python benchmarks/compare_mnist.py --budget 5m --samples 1000

is the same as ``genlab compare --data mnist --budget 5m --samples 1000 --out benchmarks/out/compare-mnist``
(every registered image family unless ``--families`` says otherwise). It writes that folder's ``report.html`` and
``results.json`` plus the summary ``benchmarks/out/compare_mnist.json`` (FID with both feature networks, KID,
precision/recall, coverage, IS, class accuracy, bits/dim, samples/s per family) and prints it as a table.
"""

from __future__ import annotations

import argparse
import time

from _common import OUT, print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)
from genlab.cli import progress_bar
from genlab.compare import compare, image_families

KEYS = ["classifier/fid", "inception/fid", "classifier/kid", "inception/kid", "classifier/precision",
        "classifier/recall", "classifier/coverage", "inception/precision", "inception/recall",
        "classes/inception_score", "classes/class_accuracy", "classes/classes_hit",
        "memorization/near_copy_share", "bits_per_dim", "samples_per_s", "train_seconds", "steps", "params"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="5m")
    ap.add_argument("--families", default=None, help="comma-separated (default: every image family)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--features", default=None, help="e.g. classifier (default: classifier,inception)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true", help="retrain families already in the output folder")
    args = ap.parse_args()
    fams = args.families.split(",") if args.families else image_families()
    t0 = time.perf_counter()
    with progress_bar() as progress:
        res = compare("mnist", fams, budget=args.budget, seed=args.seed, samples=args.samples,
                      features=args.features.split(",") if args.features else None, out=OUT / "compare-mnist",
                      retrain=args.retrain, progress=progress, log=print)
    rows = [{"family": name, **{k: r["flat"].get(k) for k in KEYS}} for name, r in res["runs"].items()]
    path = write_results("compare_mnist", {"budget": args.budget, "samples": args.samples, "seed": args.seed,
                                           "reference": res["reference"], "wall_seconds": time.perf_counter() - t0,
                                           "errors": res.get("errors", {}), "rows": rows,
                                           "report": res["report"]})
    table = [{"metric": k, **{r["family"]: r[k] for r in rows}} for k in KEYS]  # one column per family
    print_table(f"compare on mnist, {args.budget} per family, {args.samples} samples", table)
    print(f"wrote {path}, {res['report']} and {res['results']}")


if __name__ == "__main__":
    main()
