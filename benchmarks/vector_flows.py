"""Vector flows on 2-D toy densities: test log-likelihood of spline, affine-coupling and MAF flows, with density plots.

    OMP_NUM_THREADS=2 python benchmarks/vector_flows.py --budget 1m

trains every (dataset, layer) pair of ``--data`` × ``--layers`` for ``--budget`` each, reports the mean test
log-likelihood in nats per example (higher is better; exact continuous log-density of the raw coordinates), and
writes ``benchmarks/out/vector_flows.json`` plus, per pair, ``vector-flows/<data>-<layer>-density.png`` (the model
density on a grid, dark = high) and ``...-samples.png`` (a scatter of 5,000 samples).
"""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import numpy as np
import torch
from PIL import Image

import genlab
from _common import OUT, print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)
from genlab.errors import TrainingDiverged

OPTIONS: dict[str, Any] = {"steps": 8, "hidden": 64, "bins": 8, "tail_bound": 4.0, "batch_size": 256, "lr": 1e-3}


@torch.no_grad()
def density_png(model: genlab.GenerativeModel, lo: np.ndarray, hi: np.ndarray, size: int = 200) -> bytes:
    """PNG of ``exp(log_prob)`` on a ``size × size`` grid over the box ``[lo, hi]`` (dark = dense)."""
    xs = torch.linspace(float(lo[0]), float(hi[0]), size)
    ys = torch.linspace(float(hi[1]), float(lo[1]), size)  # image rows run top to bottom
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1).reshape(-1, 2)
    p = model.log_prob(grid).exp().reshape(size, size).numpy()
    img = (255 * (1 - p / max(p.max(), 1e-12))).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="moons,rings", help="comma-separated built-in vector datasets")
    ap.add_argument("--layers", default="spline,affine,maf", help="comma-separated flow layers")
    ap.add_argument("--budget", default="1m", help="training wall-clock time per pair, e.g. 1m or 10s")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    folder = OUT / "vector-flows"
    rows = []
    for data in args.data.split(","):
        for layer in args.layers.split(","):
            out = folder / f"{data}-{layer}"
            note = ""
            try:
                genlab.train("flow", data, out=out, overwrite=True, budget=args.budget, quiet=True, seed=args.seed,
                             eval_every=0, device="cpu", vector_layer=layer, **OPTIONS)
            except TrainingDiverged as e:  # record it and score the last good checkpoint the trainer kept
                note = str(e).split(";")[0]
            state = json.loads((out / "train_state.json").read_text())
            res = genlab.evaluate(out, samples=0)
            loaded = genlab.load(out, device="cpu")
            model = loaded.model
            test = genlab.api.test_split(out).x.numpy()
            pad = 0.15 * (test.max(0) - test.min(0))
            (folder / f"{data}-{layer}-density.png").write_bytes(
                density_png(model, test.min(0) - pad, test.max(0) + pad))
            genlab.api.save_samples(loaded, genlab.sample(loaded, 5000, seed=1), folder / f"{data}-{layer}-samples.png")
            rows.append({"data": data, "layer": layer, "test_loglik_nats": -res["nll_nats"],
                         "sem": res["nll_nats_sem"], "steps": state["step"], "train_s": state["elapsed"],
                         "params": sum(p.numel() for p in model.parameters()), "note": note})
    path = write_results("vector_flows", {"budget": args.budget, "seed": args.seed, "options": OPTIONS,
                                          "rows": rows})
    print_table(f"vector flows: test log-likelihood (nats/example), {args.budget} each", rows)
    print(f"wrote {path} and density/sample plots in {folder}")


if __name__ == "__main__":
    main()
