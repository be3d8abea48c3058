"""Drift detection: injected shifts caught within one window, false alarms on null windows, time per check.

    python benchmarks/serve_drift.py --window 500 --null-windows 20 --shift-windows 5 --part image
    python benchmarks/serve_drift.py --window 500 --null-windows 20 --shift-windows 5 --part text

The monitor of `genlab serve` (:class:`genlab.serve.drift.DriftMonitor`) with the run's modality statistics:
a reference of ``window`` samples plus as many for the bootstrap null (200 rounds, α = 5 % split over the
statistics). Null windows are fresh samples from the deployed model; shifted windows come from — images (a
class-conditional VAE on digits): the same model with one class never requested, and another checkpoint (the same
family trained for a tenth of the steps); text (a GPT on lee): sampling temperature 1.0 → 1.3. A shift counts as
detected in a window when any statistic exceeds its threshold.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from _common import print_table, write_results
from _serve import small_run
from genlab import api
from genlab.serve.drift import DriftMonitor


def run_checks(mon: DriftMonitor, draws: list[torch.Tensor]) -> tuple[list[bool], list[float], list[dict]]:
    alarms, secs, stats = [], [], []
    for x in draws:
        c = mon.check_now(x)
        alarms.append(c.alarm)
        secs.append(c.seconds)
        stats.append(c.statistics)
    return alarms, secs, stats


def summary(name: str, kind: str, alarms: list[bool], secs: list[float], draw_s: list[float]) -> dict[str, Any]:
    return {"scenario": name, "kind": kind, "windows": len(alarms), "alarms": int(sum(alarms)),
            "first_alarm_window": (alarms.index(True) + 1) if any(alarms) else None,
            "check_s_max": max(secs), "check_s_mean": float(np.mean(secs)), "sample_s_mean": float(np.mean(draw_s))}


def image_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    deployed = api.load(small_run("drift-vae", "vae", "digits", max_steps=args.steps), device="cpu")
    early = api.load(small_run("drift-vae-early", "vae", "digits", max_steps=max(1, args.steps // 10)), device="cpu")
    w = args.window
    mon = DriftMonitor("vae", deployed, window=w, null=args.null_rounds, alpha=0.05)
    mon.stop()
    t0 = time.perf_counter()
    mon.build_now(api.sample(deployed, 2 * w, seed=10_000))
    build_s = time.perf_counter() - t0
    rows = []
    draw_s: list[float] = []

    def timed(fn: Any) -> torch.Tensor:
        t = time.perf_counter()
        x = fn()
        draw_s.append(time.perf_counter() - t)
        return x

    null = [timed(lambda k=k: api.sample(deployed, w, seed=k)) for k in range(args.null_windows)]
    a, s, _ = run_checks(mon, null)
    rows.append(summary("null (same model)", "image", a, s, draw_s))
    draw_s = []
    k = deployed.spec.num_classes
    keep = torch.tensor([c for c in range(k) if c != 3])

    def dropped(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return api.sample(deployed, w, label=keep[torch.randint(0, len(keep), (w,), generator=g)], seed=seed)

    a, s, st = run_checks(mon, [timed(lambda j=j: dropped(100 + j)) for j in range(args.shift_windows)])
    rows.append({**summary("class 3 dropped", "image", a, s, draw_s), "example": st[0]})
    draw_s = []
    a, s, st = run_checks(mon, [timed(lambda j=j: api.sample(early, w, seed=200 + j))
                                for j in range(args.shift_windows)])
    rows.append({**summary(f"another checkpoint ({max(1, args.steps // 10)} vs {args.steps} steps)", "image", a, s,
                           draw_s), "example": st[0]})
    for r in rows:
        r["reference_build_s"] = build_s
        r["thresholds"] = mon.reference.thresholds if mon.reference else None
    return rows


def text_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    run = api.load(small_run("drift-gpt", "gpt", "lee", max_steps=args.steps, block_size=64, n_layer=2,
                             n_embd=64), device="cpu")
    w = args.window
    opts = api.sample_options(run.model, {"max_tokens": args.tokens})

    def draw(seed: int, temperature: float = 1.0) -> torch.Tensor:
        ts = run.modality.stream_texts(run, w, seed=seed, options={**opts, "temperature": temperature})
        for _ in ts.steps:
            pass
        assert ts.samples is not None
        return ts.samples

    mon = DriftMonitor("gpt", run, window=w, null=args.null_rounds, alpha=0.05)
    mon.stop()
    t0 = time.perf_counter()
    mon.build_now(torch.cat([draw(10_000), draw(10_001)]))
    build_s = time.perf_counter() - t0
    rows = []
    for name, temp, seeds in (("null (same model, T = 1.0)", 1.0, range(args.null_windows)),
                              ("temperature 1.0 → 1.3", 1.3, range(100, 100 + args.shift_windows))):
        draw_s: list[float] = []
        xs = []
        for s in seeds:
            t = time.perf_counter()
            xs.append(draw(s, temp))
            draw_s.append(time.perf_counter() - t)
        a, secs, st = run_checks(mon, xs)
        rows.append({**summary(name, "text", a, secs, draw_s), "example": st[0], "reference_build_s": build_s,
                     "thresholds": mon.reference.thresholds if mon.reference else None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("image", "text"), required=True)
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--null-windows", type=int, default=20)
    ap.add_argument("--shift-windows", type=int, default=5)
    ap.add_argument("--null-rounds", type=int, default=200)
    ap.add_argument("--steps", type=int, default=600, help="training steps of the deployed model")
    ap.add_argument("--tokens", type=int, default=32, help="tokens per text sample")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = image_part(args) if args.part == "image" else text_part(args)
    shown = [{k: v for k, v in r.items() if k not in ("example", "thresholds")} for r in rows]
    print_table(f"drift detection ({args.part}, windows of {args.window})", shown)
    path = write_results(f"serve_drift_{args.part}", {"rows": rows, "args": vars(args)})
    print(json.dumps({r["scenario"]: r.get("example") for r in rows}, default=float)[:800])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
