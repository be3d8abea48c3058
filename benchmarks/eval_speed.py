"""Wall time of `genlab eval` with the image metrics on 10,000 samples (CPU unless a GPU is present).

    python benchmarks/eval_speed.py --samples 10000

trains a VAE on mnist for ``--budget`` (or takes ``--run DIR``), then times the whole command
``genlab eval RUN --samples N`` as a subprocess with an empty feature cache (so the reference features of the test
split are computed too, as on a first run) and, with ``--also-warm``, once more with the cache filled. Writes
``benchmarks/out/eval_speed.json`` (wall times and the run's eval.json) and prints the times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import genlab
from _common import OUT, print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)


def timed_eval(run: Path, samples: int, features: str | None, cache: str) -> float:
    """Seconds of one `genlab eval` subprocess (likelihood + image metrics)."""
    cmd = [sys.executable, "-m", "genlab.cli", "eval", str(run), "--samples", str(samples)]
    if features:
        cmd += ["--features", features]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "GENLAB_CACHE": cache})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--features", default=None, help="e.g. classifier (default: classifier,inception)")
    ap.add_argument("--run", type=Path, default=None, help="an existing mnist run (default: train a VAE)")
    ap.add_argument("--budget", default="1m", help="training budget of the VAE when --run is not given")
    ap.add_argument("--also-warm", action="store_true", help="time a second eval with the feature cache filled")
    args = ap.parse_args()
    run = args.run
    if run is None:
        run = OUT / "eval-speed-vae"
        if not (run / "model.safetensors").is_file():
            genlab.train("vae", "mnist", out=run, overwrite=True, budget=args.budget, quiet=True)
    with tempfile.TemporaryDirectory() as cache:
        cold = timed_eval(run, args.samples, args.features, cache)
        warm = timed_eval(run, args.samples, args.features, cache) if args.also_warm else None
    res = json.loads((run / "eval.json").read_text())
    img = res.get("images", {})
    row = {"samples": args.samples, "features": args.features or "classifier,inception",
           "cold_cache_s": cold, "warm_cache_s": warm, "samples_per_s": img.get("samples_per_s")}
    path = write_results("eval_speed", {**row, "run": str(run), "eval": res})
    print_table("genlab eval wall time", [row])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
