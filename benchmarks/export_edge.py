"""Small models for the edge (issue 17): every family as PyTorch fp32, ONNX fp32 and ONNX int8 — size, latency per
sample at batch 1 and 64, quality — plus the torch-free runtime's cold start and peak memory beside PyTorch, and the
``tiny`` presets' size and quality beside each family's default.

Runs in pieces so each fits under the shared CPU lock (results are written per piece and merged by ``table``)::

    python benchmarks/export_edge.py --part train --family vae --preset tiny --budget 30s
    python benchmarks/export_edge.py --part train --family vae --preset default --budget 30s
    python benchmarks/export_edge.py --part bench --family vae          # bench-export of the tiny run
    python benchmarks/export_edge.py --part presets --family vae        # size + quality, tiny vs default
    python benchmarks/export_edge.py --part table                       # merge, print, write JSON

Images: mnist (the classifier features score KID/FID); GPT: the ``lee`` corpus, character tokens, block 128.

The networks of the other modalities (molecules, music, tables) are benchmarked on runs trained by their own
benchmarks (``benchmarks/molecules.py``, ``music.py``, ``tabular.py``), named here::

    python benchmarks/export_edge.py --part bench-run --run benchmarks/out/music/gpt --name music-gpt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OUT, print_table, write_results

ROOT = OUT / "export_edge"
FAMILIES = ("vae", "gan", "flow", "pixelcnn", "diffusion", "gpt")


def data_of(family: str) -> str:
    return "lee" if family == "gpt" else "mnist"


def run_dir(family: str, preset: str) -> Path:
    return ROOT / "runs" / f"{family}-{preset}"


def train(family: str, preset: str, budget: str) -> None:
    import genlab
    from genlab.presets import preset_file

    cfg = preset_file("tiny", family) if preset == "tiny" else None
    t0 = time.perf_counter()
    run = genlab.train(family, data_of(family), out=run_dir(family, preset), overwrite=True, budget=budget,
                       config_file=cfg, quiet=True, device="cpu", eval_every=0, n_samples=16)
    print(f"{family} {preset}: {run.summary['step']} steps in {time.perf_counter() - t0:.0f} s")
    _save(f"train-{family}-{preset}", {"steps": run.summary["step"], "budget": budget,
                                       "seconds": run.summary.get("elapsed")})


def bench(family: str, samples: int, repeats: int, cold: bool) -> None:
    from genlab.export.bench import bench_export

    res = bench_export(run_dir(family, "tiny"), samples=samples, calibrate=256, repeats=repeats,
                       cold_start_probe=cold, log=lambda m: print(m, flush=True))
    _save(f"bench-{family}", res)
    print_table(f"{family} (tiny preset): {res['unit']}", res["rows"])
    if res["cold_start"]:
        print_table("cold start / peak memory", res["cold_start"])


def bench_run(path: str, name: str, samples: int, repeats: int) -> None:
    """bench-export of a run trained elsewhere (a modality's own benchmark), saved as ``bench-run-<name>``."""
    from genlab.export.bench import bench_export

    res = bench_export(path, samples=samples, calibrate=256, repeats=repeats, cold_start_probe=False,
                       log=lambda m: print(m, flush=True))
    res["run"] = path
    _save(f"bench-run-{name}", res)
    print_table(f"{name} ({res['family']} on {res['data']}): {res['unit']}", res["rows"])
    print(json.dumps(res["int8"]))


def presets(family: str, samples: int) -> None:
    """fp32 size of the sampling network and PyTorch quality, tiny vs default (both trained with the same budget)."""
    import genlab
    from genlab.api import load_splits
    from genlab.export import quality
    from genlab.export.bench import _torch_bytes, _torch_sampler

    out: dict[str, Any] = {}
    for preset in ("tiny", "default"):
        run = genlab.load(run_dir(family, preset), device="cpu")
        splits = load_splits(run)
        row: dict[str, Any] = {"params": sum(p.numel() for p in run.model.parameters()),
                               "sampling_fp32_bytes": _torch_bytes(run)}
        if run.spec.form == "tokens":
            windows = quality.token_windows(splits, 64)
            row.update(quality.perplexity(quality.torch_logits(run), windows, int(run.model.config.bos_id)))
        else:
            opts = {"progress": False} if family == "diffusion" else {}
            q = quality.sample_quality(run, splits, {"pytorch": _torch_sampler(run, **opts)}, samples)
            row.update({"kid": q["pytorch"]["kid"], "kid_std": q["pytorch"]["kid_std"], "fid": q["pytorch"]["fid"],
                        "features": q["features"]})
        out[preset] = row
    _save(f"presets-{family}", out)
    print(json.dumps(out, indent=1))


def _save(name: str, obj: Any) -> None:
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / f"{name}.json").write_text(json.dumps(obj, indent=1) + "\n")


def _load(name: str) -> Any:
    p = ROOT / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def table() -> None:
    rows, presets_rows, cold = [], [], []
    merged: dict[str, Any] = {}
    for family in FAMILIES:
        b = _load(f"bench-{family}")
        if b is not None:
            merged[family] = b
            for r in b["rows"]:
                q = {c: r.get(c) for c in b["quality_columns"]}
                rows.append({"family": family, "variant": r["variant"], "size_kB": r["size_bytes"] / 1e3,
                             "lat_b1_ms": 1e3 * r["latency_b1_s"], "lat_b64_ms": 1e3 * r["latency_b64_s"], **q})
            cold += [{"family": family, **c} for c in b.get("cold_start", [])]
        p = _load(f"presets-{family}")
        if p is not None:
            merged.setdefault(family, {})["presets"] = p
            for name, r in p.items():
                t = _load(f"train-{family}-{name}") or {}
                presets_rows.append({"family": family, "preset": name, "params": r["params"],
                                     "fp32_kB": r["sampling_fp32_bytes"] / 1e3, "steps": t.get("steps"),
                                     **{k: r[k] for k in ("kid", "fid", "perplexity") if k in r}})
    print_table("PyTorch fp32 vs ONNX fp32 vs ONNX int8 (tiny presets)", rows)
    others = []
    for p in sorted(ROOT.glob("bench-run-*.json")):
        b = json.loads(p.read_text())
        name = p.stem.removeprefix("bench-run-")
        merged.setdefault("runs", {})[name] = b
        for r in b["rows"]:
            others.append({"run": name, "family": b["family"], "variant": r["variant"],
                           "size_kB": r["size_bytes"] / 1e3, "lat_b1_ms": 1e3 * r["latency_b1_s"],
                           "lat_b64_ms": 1e3 * r["latency_b64_s"],
                           **{c: r.get(c) for c in b["quality_columns"]}})
    if others:
        print_table("other modalities' networks: PyTorch fp32 vs ONNX fp32 vs ONNX int8", others)
    if cold:
        print_table("cold start and peak memory", cold)
    print_table("tiny preset vs default (same training budget)", presets_rows)
    print(write_results("export_edge", {"families": merged}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("train", "bench", "bench-run", "presets", "table"), required=True)
    ap.add_argument("--run", help="bench-run: the run folder")
    ap.add_argument("--name", help="bench-run: its name in the results")
    ap.add_argument("--family", choices=FAMILIES)
    ap.add_argument("--preset", choices=("tiny", "default"), default="tiny")
    ap.add_argument("--budget", default="30s")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-cold-start", action="store_true")
    a = ap.parse_args()
    if a.part == "bench-run":
        if not (a.run and a.name):
            ap.error("--run and --name are required")
        bench_run(a.run, a.name, a.samples, a.repeats)
        return
    if a.part != "table" and a.family is None:
        ap.error("--family is required")
    if a.part == "train":
        train(a.family, a.preset, a.budget)
    elif a.part == "bench":
        bench(a.family, a.samples, a.repeats, not a.no_cold_start)
    elif a.part == "presets":
        presets(a.family, a.samples)
    else:
        table()


if __name__ == "__main__":
    main()
