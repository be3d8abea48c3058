"""``genlab bench-export RUN``: one run in PyTorch fp32, ONNX fp32 and ONNX int8 side by side — size on disk,
latency per sample (per token for token models) at batch 1 and 64, quality — and the cold start and peak memory of
the torch-free runtime beside PyTorch's.

Timings interleave the variants (variant A, B, C, then again) and report medians, so a shared machine's drift hits
all of them alike; threads: PyTorch's ``torch.get_num_threads()`` and ONNX Runtime's intra-op threads are the same
number. Latency per sample is the time of one ``sample(b)`` call divided by ``b``; for token models it is the time
of one decoding step of the batch (``max_tokens`` steps timed, divided by their number), so tokens/s = ``b`` /
latency. The int8 model is measured even where ``genlab export --quantize int8`` would refuse it; the row then says
so. Cold start: a fresh Python process from start to its first sample (imports, loading, one sample), wall time
measured by the parent, peak resident memory (``ru_maxrss``) by the child, which also reports whether torch got
imported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.export import quality
from genlab.export.folder import folder_bytes
from genlab.run import Run

Log = Callable[[str], None]
BATCHES = (1, 64)
#: decoding steps timed for token models
TOKEN_STEPS = 32


def _nolog(msg: str) -> None:
    return None


def _torch_sampler(run: Run, **options: Any) -> quality.Sampler:
    import genlab

    def fn(n: int, seed: int, labels: np.ndarray | None) -> np.ndarray:
        lab = None if labels is None else torch.from_numpy(labels)
        return genlab.sample(run, n, label=lab, seed=seed, **options).numpy()

    return fn


def _onnx_sampler(exported: Any, **options: Any) -> quality.Sampler:
    def fn(n: int, seed: int, labels: np.ndarray | None) -> np.ndarray:
        return np.asarray(exported.sample(n, label=labels, seed=seed, **options))

    return fn


def latencies(samplers: dict[str, quality.Sampler], labels_of: Callable[[int], np.ndarray | None], repeats: int,
              per: int = 1, batches: tuple[int, ...] = BATCHES) -> dict[str, dict[int, float]]:
    """Median seconds per sample (or per ``per`` steps) of each sampler at each batch size, interleaved."""
    times: dict[str, dict[int, list[float]]] = {v: {b: [] for b in batches} for v in samplers}
    for b in batches:
        for fn in samplers.values():  # warm-up (allocations, ONNX Runtime's first-run planning)
            fn(b, 0, labels_of(b))
        for r in range(repeats):
            for v, fn in samplers.items():
                t0 = time.perf_counter()
                fn(b, r + 1, labels_of(b))
                times[v][b].append((time.perf_counter() - t0) / (b * per))
    return {v: {b: statistics.median(ts) for b, ts in per_b.items()} for v, per_b in times.items()}


def cold_start(run_path: Path, folder: Path, options: dict[str, Any], repeats: int = 2) -> list[dict[str, Any]]:
    """Cold start (process start → first sample) and peak RSS of the torch-free runtime and of PyTorch."""
    opts = json.dumps(options)
    # peak RSS of this process image: VmHWM (reset by exec), not ru_maxrss, which Linux carries over from the
    # forking parent (every probe would report the benchmark's own peak)
    report = ("import json, resource, sys\n"
              "try:\n"
              "    hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
              "except (OSError, IndexError):\n"
              "    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "print(json.dumps({'rss_kb': hwm, 'torch': 'torch' in sys.modules}))")
    scripts = {
        "onnxruntime + numpy": f"from genlab.export.runtime import load; load({str(folder)!r}).sample(1, seed=0, "
                               f"**json.loads({opts!r}))",
        "pytorch": f"import genlab; genlab.sample(genlab.load({str(run_path)!r}, device='cpu'), 1, seed=0, "
                   f"**json.loads({opts!r}))",
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    runs: dict[str, list[tuple[float, dict[str, Any]]]] = {k: [] for k in scripts}
    for _ in range(repeats):
        for name, code in scripts.items():
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", f"import json\n{code}\n{report}"], capture_output=True,
                                 text=True, env=env, check=False)
            seconds = time.perf_counter() - t0
            if res.returncode != 0:
                raise RuntimeError(f"cold-start probe for {name} failed: {res.stderr.strip().splitlines()[-1:]}")
            runs[name].append((seconds, json.loads(res.stdout.strip().splitlines()[-1])))
    return [{"runtime": name, "seconds": statistics.median(s for s, _ in rs),
             "peak_rss_mb": statistics.median(r["rss_kb"] for _, r in rs) / 1024,
             "imports_torch": any(r["torch"] for _, r in rs), "repeats": repeats} for name, rs in runs.items()]


def bench_export(source: Run | str | Path, *, samples: int = 256, calibrate: int = 256, repeats: int = 3,
                 cold_start_probe: bool = True, cold_repeats: int = 2, batches: tuple[int, ...] = BATCHES,
                 log: Log = _nolog, **kwargs: Any) -> dict[str, Any]:
    """Size, latency and quality of a run as PyTorch fp32, ONNX fp32 and ONNX int8 (see the module docstring).

    Arguments:
        source: a run or run folder.
        samples: samples scored for quality (token models: validation windows, at most 64).
        calibrate: calibration samples for static int8 quantization.
        repeats: timed repeats per latency (medians are reported).
        cold_start_probe: also measure cold start and peak memory in fresh processes (``cold_start`` is accepted
            as the same switch).
        cold_repeats: repeats of each cold-start probe.
        batches: batch sizes timed.
        log: progress messages.

    Returns:
        ``{"family", "data", "unit", "rows": [{variant, size_bytes, latency_b1_s, latency_b64_s, …quality}],
        "quality_columns", "quality", "cold_start", "int8", "notes"}``.
    """
    from genlab.api import load, load_splits
    from genlab.errors import GenlabError
    from genlab.export.exporters import exporter_for
    from genlab.export.pipeline import export_run
    from genlab.export.runtime import load as load_exported

    cold_start_probe = bool(kwargs.pop("cold_start", cold_start_probe))
    run = load(source, device="cpu") if isinstance(source, str | Path) else source
    splits = load_splits(run)
    notes: list[str] = []
    tokens = run.spec.form == "tokens"
    with tempfile.TemporaryDirectory(prefix="genlab-bench-") as tmp:
        fp32_dir, int8_dir = Path(tmp) / "fp32", Path(tmp) / "int8"
        log("exporting fp32")
        m32 = export_run(run, fp32_dir, log=log)
        log("exporting int8")
        m8 = export_run(run, int8_dir, quantize="int8", calibrate=calibrate, check_quality=False, log=log)
        e32, e8 = load_exported(fp32_dir), load_exported(int8_dir)
        sizes = {"pytorch fp32": _torch_bytes(run), "onnx fp32": folder_bytes(fp32_dir), "onnx int8": folder_bytes(
            int8_dir)}
        options: dict[str, Any] = {}
        per = 1
        o_cls = e32.runtime.options_cls
        decoding = tokens and o_cls is not None and "max_tokens" in {f.name for f in dataclasses.fields(o_cls)}
        if decoding:  # next-token models are timed per decoding step; a sequence VAE decodes whole windows
            options = {"max_tokens": TOKEN_STEPS, "temperature": 1.0}
            per = TOKEN_STEPS
        torch_opts = {**options, "progress": False} if run.family == "diffusion" else options
        samplers = {"pytorch fp32": _torch_sampler(run, **torch_opts), "onnx fp32": _onnx_sampler(e32, **options),
                    "onnx int8": _onnx_sampler(e8, **options)}
        log("timing")
        lat = latencies(samplers, lambda b: quality.sample_labels(run, b), repeats, per, batches)
        log("scoring quality")
        exporter = exporter_for(run)
        calls = {"pytorch fp32": quality.torch_call(exporter.graphs(run)), "onnx fp32": quality.onnx_call(e32),
                 "onnx int8": quality.onnx_call(e8)}
        held = {v: exporter.held_out_nll(run, splits.test, samples, 0, call) for v, call in calls.items()}
        metric = quality.metric_of(run.spec.form)
        if all(h is not None for h in held.values()):
            metric = "perplexity"
            qual = {v: h for v, h in held.items() if h is not None}
            columns = ["perplexity"]
            q_report: dict[str, Any] = {"held_out": qual["onnx fp32"]["tokens"], **qual}
        elif tokens:
            windows = quality.token_windows(splits, min(samples, 64))
            bos = int(m32["model"]["bos_id"])
            qual = {"pytorch fp32": quality.perplexity(quality.torch_logits(run), windows, bos),
                    "onnx fp32": quality.perplexity(e32.runtime.logits, windows, bos),  # type: ignore[attr-defined]
                    "onnx int8": quality.perplexity(e8.runtime.logits, windows, bos)}  # type: ignore[attr-defined]
            columns = ["perplexity"]
            q_report = {"windows": len(windows), **qual}
        else:
            q_report = quality.sample_quality(run, splits, samplers, samples)
            qual = {v: q_report[v] for v in samplers}
            columns = ["table_distance", "quality"] if run.spec.form == "table" else ["kid", "fid"]
        ok, rel = quality.within_bound(metric, qual["onnx fp32"][metric], qual["onnx int8"][metric])
        int8: dict[str, Any] = {"metric": metric, "relative_change": rel, "within_bound": ok,
                                "bound": quality.BOUNDS[metric],
                                "quantization": sorted({g["quantization"] for g in m8["graphs"].values()})}
        if not ok:
            notes.append(f"int8 {metric} {100 * rel:+.1f} % vs ONNX fp32 breaks the +{100 * int8['bound']:.0f} % "
                         f"bound: `genlab export --quantize int8` refuses this model")
        rows = []
        for v in samplers:
            row: dict[str, Any] = {"variant": v, "size_bytes": sizes[v],
                                   **{f"latency_b{b}_s": lat[v][b] for b in batches},
                                   **{f"per_s_b{b}": 1.0 / lat[v][b] for b in batches}}
            row.update({c: qual[v].get(c) for c in columns})
            rows.append(row)
        cs: list[dict[str, Any]] = []
        if cold_start_probe and run.path is not None:
            log("cold start")
            try:
                cs = cold_start(Path(run.path), fp32_dir, options, cold_repeats)
            except (RuntimeError, OSError, GenlabError) as e:
                notes.append(f"cold start not measured: {e}")
    return {"family": run.family, "data": run.data, "unit": "per token (one decoding step of the batch)" if decoding
            else "per sample", "rows": rows, "quality_columns": columns, "quality": q_report, "int8": int8,
            "cold_start": cs, "parity": m32["parity"], "exporters": {k: g["exporter"] for k, g in
                                                                    m32["graphs"].items()},
            "threads": torch.get_num_threads(), "notes": notes}


def _torch_bytes(run: Run) -> int:
    """Bytes of the PyTorch sampling network in fp32: the parameters and buffers the exported graphs hold (the
    run's ``model.safetensors`` also has what sampling does not use, e.g. a VAE's encoder or a GAN's
    discriminator)."""
    from genlab.export.exporters import exporter_for

    seen: dict[int, int] = {}
    for spec in exporter_for(run).graphs(run):
        for t in [*spec.module.parameters(), *spec.module.buffers()]:
            if t.is_floating_point():
                seen[t.data_ptr()] = t.numel() * 4
    return sum(seen.values())
