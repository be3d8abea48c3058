"""Synthetic tables: genlab's five families side by side with SDV (GaussianCopula, CTGAN, TVAE), and the scale test.

Every piece is its own command (run each under the CPU lock; each writes JSON under ``benchmarks/out/tabular/`` and
is skipped when its JSON exists, so a long protocol resumes):

    python benchmarks/tabular.py sdv-venv                                  # builds benchmarks/.venvs/sdv once
    python benchmarks/tabular.py genlab --data abalone --family diffusion --budget 60s
    python benchmarks/tabular.py sdv --data abalone --synth ctgan --budget 60s
    python benchmarks/tabular.py scale --rows 1000000 --family vae --budget 2m
    python benchmarks/tabular.py table                                     # the tables, results JSON

The SDV synthesizers run in their own virtualenv (SDV pins an older pandas; its torch is genlab's, through a
``.pth`` file, so nothing is downloaded twice) on the *same* training split genlab uses, exported as CSV. Both
sides get the same wall-clock fit budget (for CTGAN/TVAE one epoch is timed, then as many epochs as fit), draw as
many rows as the training split has, and are scored by the same genlab metrics (:mod:`genlab.metrics.tabular`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import genlab
from _common import OUT, print_table, write_results  # benchmarks/_common.py (scripts run from any cwd)
from genlab.config import build, parse_duration
from genlab.metrics.tabular import table_report
from genlab.modalities.tabular import TableDataConfig, load_table, sample_frame

HERE = Path(__file__).resolve().parent
WORK = OUT / "tabular"
VENV = HERE / ".venvs" / "sdv"
SDV_PINS = ["sdv>=1.15,<2"]
#: genlab family options per benchmark (defaults otherwise)
OPTIONS: dict[str, dict[str, Any]] = {
    "vae": {"hidden": 256, "latent_dim": 64, "batch_size": 256},
    "gan": {"batch_size": 500, "objective": "wgan-gp", "spectral_norm": False, "d_features": 256},
    "flow": {"steps": 6, "hidden": 128, "batch_size": 256, "bins": 8},
    "diffusion": {"batch_size": 256, "mlp_widths": "512,512", "num_timesteps": 1000},
    "gpt": {"n_layer": 3, "n_head": 4, "n_embd": 128, "batch_size": 128, "warmup_steps": 50},
}
#: synthetic rows drawn and scored per model (the training split's size, at most this)
MAX_ROWS = 10_000
SAMPLE_OPTIONS: dict[str, dict[str, Any]] = {"diffusion": {"steps": 50, "sampler": "ddim", "progress": False}}


def _split(data: str) -> Any:
    return load_table(build(TableDataConfig, {"data": data}), "table")


def _score(data: str, synth: Any, seed: int = 0) -> dict[str, Any]:
    s = _split(data)
    codec = s.train.codec
    return table_report(s.train.frame, s.test.frame, synth, codec.columns, target=codec.target, seed=seed)


def _flat(rep: dict[str, Any]) -> dict[str, Any]:
    u = rep["utility"]
    return {"quality": rep["quality"], "shapes": rep["shapes"], "trends": rep["trends"],
            "detection_auc": rep["detection"]["auc"], "utility": u.get("synthetic"), "utility_real": u.get("real"),
            "utility_metric": u.get("metric"), "dcr_train": rep["privacy"]["dcr_train"],
            "closer_to_train": rep["privacy"]["closer_to_train"], "mia_auc": rep["privacy"]["mia_auc"],
            "missing_error_points": rep["missing"]["max_error_points"],
            "missing": {k: v["error_points"] for k, v in rep["missing"]["columns"].items()}}


def cmd_genlab(a: argparse.Namespace) -> None:
    path = WORK / a.data / f"genlab-{a.family}.json"
    if path.exists() and not a.force:
        print(f"{path} exists; --force to redo")
        return
    run_dir = WORK / a.data / "runs" / a.family
    opts = dict(OPTIONS[a.family])
    # small tables (penguins: 275 training rows): at most half the rows per batch, a multiple of the GAN's pac 10
    opts["batch_size"] = min(opts["batch_size"], len(_split(a.data).train) // 20 * 10)
    t0 = time.perf_counter()
    run = genlab.train(a.family, a.data, out=run_dir, overwrite=True, budget=a.budget, quiet=True, eval_every=0,
                       seed=0, n_samples=16, **opts)
    wall = time.perf_counter() - t0
    n = min(len(genlab.api.load_splits(run).train), MAX_ROWS)
    t1 = time.perf_counter()
    frame = sample_frame(run, n, seed=0, **SAMPLE_OPTIONS.get(a.family, {}))
    sample_s = time.perf_counter() - t1
    rep = _score(a.data, frame)
    res = {"data": a.data, "model": f"genlab {a.family}", "budget": a.budget, "fit_s": run.summary["elapsed"],
           "fit_wall_s": wall, "steps": run.summary["step"], "sample_s": sample_s, "rows": n, **_flat(rep)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "missing"}))


def cmd_sdv_venv(a: argparse.Namespace) -> None:
    py = VENV / "bin" / "python"
    if py.exists() and not a.force:
        print(f"{VENV} exists")
        return
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    site = next((VENV / "lib").glob("python*/site-packages"))
    import torch

    # genlab's torch (and only what SDV finds nowhere else) through a .pth after the venv's own packages
    (site / "genlab_torch.pth").write_text(str(Path(torch.__file__).resolve().parents[1]) + "\n")
    pin = VENV / "constraints.txt"  # never let pip fetch another torch
    pin.write_text(f"torch=={torch.__version__}\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(pin), *SDV_PINS], check=True)
    out = subprocess.run([str(py), "-c", "import sdv, pandas, torch; print(sdv.__version__, pandas.__version__, "
                          "torch.__version__)"], check=True, capture_output=True, text=True)
    print("sdv, pandas, torch:", out.stdout.strip())


def cmd_sdv(a: argparse.Namespace) -> None:
    path = WORK / a.data / f"sdv-{a.synth}.json"
    if path.exists() and not a.force:
        print(f"{path} exists; --force to redo")
        return
    s = _split(a.data)
    d = WORK / a.data / f"sdv-{a.synth}"
    d.mkdir(parents=True, exist_ok=True)
    s.train.frame.to_csv(d / "train.csv", index=False)
    (d / "kinds.json").write_text(json.dumps({c.name: c.kind for c in s.train.codec.columns}))
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([str(VENV / "bin" / "python"), str(HERE / "_sdv_runner.py"), str(d / "train.csv"), str(d),
                           a.synth, str(parse_duration(a.budget)), str(min(len(s.train), MAX_ROWS)),
                           str(d / "kinds.json")],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"SDV {a.synth} failed:\n{proc.stderr[-3000:]}")
    fit = json.loads((d / "fit.json").read_text())
    import pandas as pd

    synth = pd.read_csv(d / "synth.csv")
    rep = _score(a.data, synth)
    res = {"data": a.data, "model": f"SDV {a.synth}", "budget": a.budget, "fit_s": fit["fit_total_s"],
           "epochs": fit["epochs"], "sample_s": fit["sample_s"], "rows": fit["rows"], **_flat(rep)}
    path.write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "missing"}))


def million(rows: int, path: Path, seed: int = 0) -> Path:
    """diamonds resampled to ``rows`` rows with noise: numbers jittered by 1 % of their spread (clipped to the
    range, rounded as the column is), categories kept. Written as Parquet."""
    from genlab.modalities.tabular import diamonds

    df = diamonds()
    rng = np.random.default_rng(seed)
    big = df.iloc[rng.integers(0, len(df), rows)].reset_index(drop=True)
    for c in ("carat", "depth", "table", "x", "y", "z", "price"):
        v = big[c].to_numpy(dtype=np.float64)
        v = np.clip(v + rng.normal(0, 0.01 * df[c].std(), rows), df[c].min(), df[c].max())
        big[c] = np.round(v).astype(np.int64) if c == "price" else np.round(v, 2)
    big.to_parquet(path, index=False)
    return path


def _child(cmd: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS of the child in MB, stdout) of one command run as its own process."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return time.perf_counter() - t0, max(peak, before) / 1024, proc.stdout


def cmd_scale(a: argparse.Namespace) -> None:
    path = WORK / f"scale-{a.family}-{a.rows}.json"
    d = WORK / "scale"
    d.mkdir(parents=True, exist_ok=True)
    table = d / f"diamonds-{a.rows}.parquet"
    if not table.exists():
        million(a.rows, table)
    run = d / f"{a.family}-{a.rows}"
    genlab_cli = [sys.executable, "-m", "genlab.cli"]
    opts = [x for k, v in OPTIONS[a.family].items() for x in (f"--{k.replace('_', '-')}", str(v))]
    fit_s, fit_mb, _ = _child([*genlab_cli, "train", a.family, "--data", str(table), "--out", str(run),
                               "--overwrite", "--budget", a.budget, "--quiet", "--eval-every", "0",
                               "--n-samples", "16", "--checkpoint-every", "100000", *opts])
    state = json.loads((run / "train_state.json").read_text())
    out_csv = d / f"synth-{a.family}-{a.rows}.csv"
    sample_s, sample_mb, _ = _child([*genlab_cli, "sample", str(run), "-n", str(a.rows), "--out", str(out_csv)])
    res = {"rows": a.rows, "family": a.family, "budget": a.budget, "fit_process_s": fit_s,
           "train_s": state["elapsed"], "steps": state["step"], "fit_peak_mb": fit_mb,
           "rows_seen_per_s": state["step"] * OPTIONS[a.family]["batch_size"] / state["elapsed"],
           "sample_process_s": sample_s, "sample_peak_mb": sample_mb, "sample_rows_per_s": a.rows / sample_s,
           "csv_mb": out_csv.stat().st_size / 2**20}
    path.write_text(json.dumps(res, indent=2))
    print(json.dumps(res))


def cmd_table(a: argparse.Namespace) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(WORK.glob("*/*.json")) if p.parent.name != "scale"]
    scale = [json.loads(p.read_text()) for p in sorted(WORK.glob("scale-*.json"))]
    for data in dict.fromkeys(r["data"] for r in rows):
        print_table(f"{data}: genlab vs SDV (same split, same fit budget, genlab's metrics)",
                    [{k: r.get(k) for k in ("model", "budget", "fit_s", "quality", "shapes", "trends", "detection_auc",
                                            "utility", "utility_real", "closer_to_train", "mia_auc",
                                            "missing_error_points", "sample_s")} for r in rows if r["data"] == data])
    if scale:
        print_table("scale", scale)
    print(write_results("tabular", {"runs": rows, "scale": scale}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("genlab")
    g.add_argument("--data", required=True)
    g.add_argument("--family", required=True, choices=list(OPTIONS))
    g.add_argument("--budget", default="60s")
    g.add_argument("--force", action="store_true")
    v = sub.add_parser("sdv-venv")
    v.add_argument("--force", action="store_true")
    s = sub.add_parser("sdv")
    s.add_argument("--data", required=True)
    s.add_argument("--synth", required=True, choices=["gaussian_copula", "ctgan", "tvae"])
    s.add_argument("--budget", default="60s")
    s.add_argument("--force", action="store_true")
    c = sub.add_parser("scale")
    c.add_argument("--rows", type=int, default=1_000_000)
    c.add_argument("--family", default="vae", choices=list(OPTIONS))
    c.add_argument("--budget", default="2m")
    sub.add_parser("table")
    a = p.parse_args()
    {"genlab": cmd_genlab, "sdv-venv": cmd_sdv_venv, "sdv": cmd_sdv, "scale": cmd_scale, "table": cmd_table}[
        a.cmd.replace("_", "-")](a)


if __name__ == "__main__":
    main()
