"""``export_run``: a run → an exported folder, checked.

1. the family's exporter lists its graphs (:mod:`genlab.export.exporters`); options that cannot be exported, or a
   static int8 quantization without ``--calibrate``, stop here with one line;
2. each graph is exported with the dynamo exporter (the TorchScript exporter only when that fails, with the reason
   recorded in ``export.json``);
3. parity: every graph is run in ONNX Runtime on fixed inputs and must match PyTorch to ``1e-4 · max(1, |y|)``;
4. with ``--quantize int8``: dynamic (matmul graphs) or static QDQ quantization on ``--calibrate N`` calibration
   inputs, then the quality check of :mod:`genlab.export.quality` — an int8 model that breaks the bound is refused
   with the measured loss (nothing is written);
5. the folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.errors import CapabilityError, ConfigError
from genlab.export import quality
from genlab.export.exporters import GraphSpec, exporter_for, parity, shared_torchlib_registry, to_onnx
from genlab.export.folder import FORMAT, FORMAT_VERSION, MANIFEST, folder_bytes, write_graphs, write_json
from genlab.extras import require
from genlab.run import Run

FORMATS = ("onnx",)
QUANTIZE = ("int8",)
#: opset of the exported graphs (the dynamo exporter's torchlib targets 18+)
OPSET = 20
#: parity tolerance: max |Δ| ≤ PARITY_TOL · max(1, max |y|)
PARITY_TOL = 1e-4

Log = Callable[[str], None]


def _nolog(msg: str) -> None:
    return None


def check_options(fmt: str, quantize: str | None, calibrate: int | None, opset: int) -> None:
    """Validate the export options a user gives.

    Raises:
        ConfigError: for an unknown format or quantization, a calibration size below 1, or an opset below 18.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be {' or '.join(FORMATS)}, got {fmt!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be {' or '.join(QUANTIZE)}, got {quantize!r}")
    if calibrate is not None and calibrate < 1:
        raise ConfigError(f"--calibrate must be at least 1 sample, got {calibrate}")
    if not 18 <= opset <= 23:
        raise ConfigError(f"--opset must be between 18 and 23 (the dynamo exporter's range), got {opset}")


def _as_cpu_run(source: Run | str | Path) -> Run:
    from genlab.api import as_run, load

    run = load(source, device="cpu") if isinstance(source, str | Path) else as_run(source)
    if run.model.device.type != "cpu":
        import copy

        run = dataclasses.replace(run, model=copy.deepcopy(run.model).cpu())
    run.model.eval()
    return run


def _artifacts(run: Run) -> dict[str, bytes]:
    """The run's artifact files (a tokenizer), to copy into the exported folder."""
    files: dict[str, bytes] = {}
    for name in run.modality.artifact_files:
        if run.path is not None and (Path(run.path) / name).is_file():
            files[name] = (Path(run.path) / name).read_bytes()
    tok = run.artifacts.get("tokenizer")
    if "tokenizer.json" in run.modality.artifact_files and "tokenizer.json" not in files and tok is not None:
        files["tokenizer.json"] = tok.to_json().encode("utf-8")
    return files


#: exports of this process by (run folder, weights file's mtime and size, opset, graph): ``bench-export`` exports a
#: run twice (fp32, int8) and a test session many times; tracing it once is enough
_CACHE: dict[tuple[Any, ...], Any] = {}


def _cache_key(run: Run, spec: GraphSpec, opset: int) -> tuple[Any, ...] | None:
    if run.path is None or not (Path(run.path) / "model.safetensors").is_file():
        return None
    st = (Path(run.path) / "model.safetensors").stat()
    return (str(Path(run.path).resolve()), st.st_mtime_ns, st.st_size, opset, spec.name)


def export_graphs(run: Run, specs: list[GraphSpec], opset: int, log: Log = _nolog) -> dict[str, Any]:
    """Export each graph to an ONNX model proto: ``name → exporters.Exported`` (reusing this process's earlier
    export of the same run's weights)."""
    out = {}
    with shared_torchlib_registry():
        for spec in specs:
            key = _cache_key(run, spec, opset)
            if key is not None and key in _CACHE:
                out[spec.name] = _CACHE[key]
                continue
            log(f"exporting {spec.name}")
            out[spec.name] = to_onnx(spec, opset)
            if key is not None:
                _CACHE[key] = out[spec.name]
            if out[spec.name].fallback_reason:
                log(f"{spec.name}: the dynamo exporter failed ({out[spec.name].fallback_reason}); exported with the "
                    "TorchScript exporter instead")
    return out


def _write_folder(folder: Path, protos: dict[str, Any], manifest: dict[str, Any], files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = write_graphs(protos, folder)
    for name, file in names.items():
        manifest["graphs"][name]["file"] = file
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    write_json(folder / MANIFEST, manifest)


def _manifest(run: Run, exporter: Any, specs: list[GraphSpec], exported: dict[str, Any], opset: int
              ) -> dict[str, Any]:
    from genlab.api import __version__

    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "genlab_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "family": run.family, "kind": run.modality.kind, "form": run.spec.form, "runtime": exporter.runtime,
        "spec": run.spec.to_json(), "model": exporter.config(run),
        "graphs": {s.name: {"file": f"{s.name}.onnx", "inputs": s.inputs, "outputs": s.outputs,
                            "precision": "fp32", "quantization": None, "exporter": exported[s.name].exporter,
                            **({"fallback_reason": exported[s.name].fallback_reason}
                               if exported[s.name].fallback_reason else {})}
                   for s in specs},
        "opset": opset, "torch_version": torch.__version__,
        "source": {"run": str(run.path) if run.path is not None else None,
                   "run_format_version": run.config.get("format_version"), "data": run.data},
    }


def export_run(source: Run | str | Path, out: str | Path, *, fmt: str = "onnx", quantize: str | None = None,
               calibrate: int | None = None, opset: int = OPSET, check_samples: int = 256, seed: int = 0,
               overwrite: bool = False, check_quality: bool = True, log: Log = _nolog) -> dict[str, Any]:
    """Export a run's sampling network to an ONNX folder, parity-checked, optionally quantized to int8.

    Arguments:
        source: a run or run folder.
        out: the folder to write (must not exist or be empty unless ``overwrite``).
        fmt: ``onnx``.
        quantize: None (fp32) or ``int8``.
        calibrate: calibration samples for static int8 quantization (convolutional graphs).
        opset: ONNX opset.
        check_samples: samples (or validation windows, capped at 64) the int8 quality check compares.
        seed: seed of example, calibration and quality-check inputs.
        overwrite: replace an existing folder.
        check_quality: run the int8 quality check (and refuse what breaks the bound); False keeps any int8 model
            (the benchmark measures those too).
        log: progress messages.

    Returns:
        the folder's ``export.json`` contents.

    Raises:
        ConfigError: for bad options, a missing calibration set for static quantization, or an occupied ``out``;
        CapabilityError: for a family that cannot be exported, a graph that fails the parity check, or an int8
            model that breaks the quality bound (the message has the measured loss).
    """
    check_options(fmt, quantize, calibrate, opset)
    require("onnx", "export", "genlab export")
    require("onnxruntime", "export", "genlab export")
    out = Path(out)
    if not out.parent.exists():
        raise ConfigError(f"folder {out.parent} does not exist; create it or choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} already exists; use --overwrite to replace it or choose another --out")
    run = _as_cpu_run(source)
    exporter = exporter_for(run)
    specs = exporter.graphs(run)
    static = [s.name for s in specs if s.quantization == "static"]
    if quantize and static and calibrate is None:
        raise ConfigError(f"static int8 quantization of the {run.family}'s convolutional graphs ({', '.join(static)}) "
                          "needs calibration samples: add --calibrate N (e.g. --calibrate 256)")
    exported = export_graphs(run, specs, opset, log)
    manifest = _manifest(run, exporter, specs, exported, opset)
    files = _artifacts(run)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        fp32 = Path(tmp) / "fp32"
        _write_folder(fp32, {n: e.proto for n, e in exported.items()}, manifest, files)
        log("checking parity with PyTorch")
        manifest["parity"] = check_parity(fp32, specs)
        write_json(fp32 / MANIFEST, manifest)
        manifest["size_bytes"] = folder_bytes(fp32, manifest["graphs"])
        final = fp32
        if quantize:
            final = Path(tmp) / "int8"
            manifest = quantize_folder(run, exporter, specs, exported, manifest, fp32, final, calibrate,
                                       check_samples, seed, check_quality, log)
        write_json(final / MANIFEST, manifest)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        final.rename(out)
    return manifest


def check_parity(folder: Path, specs: list[GraphSpec]) -> dict[str, Any]:
    """Run each exported graph on its fixed inputs; ``{graph: {max_abs_diff, max_abs_output}}``.

    Raises:
        CapabilityError: when a graph differs from PyTorch by more than the tolerance.
    """
    from genlab.export.runtime import Graph

    report: dict[str, Any] = {}
    for spec in specs:
        worst, scale = parity(spec, Graph(folder / f"{spec.name}.onnx"))
        report[spec.name] = {"max_abs_diff": worst, "max_abs_output": scale, "inputs": 1 + len(spec.checks)}
        if not worst <= PARITY_TOL * max(1.0, scale):
            raise CapabilityError(f"the exported {spec.name} graph differs from PyTorch by {worst:.3g} (tolerance "
                                  f"{PARITY_TOL:g} × max(1, |output|)); not written")
    return report


def quantize_folder(run: Run, exporter: Any, specs: list[GraphSpec], exported: dict[str, Any],
                    manifest: dict[str, Any], fp32: Path, target: Path, calibrate: int | None, check_samples: int,
                    seed: int, check_quality: bool, log: Log = _nolog) -> dict[str, Any]:
    """Quantize every graph to int8 into ``target`` and check its quality against the fp32 folder.

    Returns:
        the int8 folder's manifest (with ``quantization`` and ``quality``).

    Raises:
        CapabilityError: when the int8 model breaks the quality bound (with the measured values).
    """
    from genlab.export.quantize import quantize as quantize_proto

    protos = {}
    int8 = {**manifest, "graphs": {k: dict(v) for k, v in manifest["graphs"].items()}}
    for spec in specs:
        calib = None
        if spec.quantization == "static":
            assert calibrate is not None
            log(f"calibrating {spec.name} on {calibrate} samples")
            calib = list(exporter.calibration(run, spec, calibrate, seed))
        log(f"quantizing {spec.name} ({spec.quantization} int8)")
        protos[spec.name] = quantize_proto(exported[spec.name].proto, spec.quantization, calib)
        int8["graphs"][spec.name].update(precision="int8", quantization=spec.quantization,
                                         calibration_samples=calibrate if spec.quantization == "static" else None)
    _write_folder(target, protos, int8, _artifacts(run))
    int8["size_bytes"] = folder_bytes(target, int8["graphs"])
    int8["size_fp32_bytes"] = manifest["size_bytes"]
    if check_quality:
        log("checking int8 quality against fp32")
        report = int8_quality(run, fp32, target, check_samples, seed)
        int8["quality"] = report
        if not report["within_bound"]:
            raise CapabilityError(
                f"int8 breaks {run.family} quality: {report['metric']} {report['fp32']:.4g} → {report['int8']:.4g} "
                f"({100 * report['relative_change']:+.1f} %, bound +{100 * report['bound']:.0f} %) on "
                f"{report['n']} {report['unit']}; export fp32 (drop --quantize) instead")
    return int8


def int8_quality(run: Run, fp32: Path, int8: Path, n: int, seed: int) -> dict[str, Any]:
    """The family's quality metric for the fp32 and int8 folders, and whether int8 keeps the bound."""
    from genlab.api import load_splits
    from genlab.export.runtime import load

    metric = quality.metric_of(run.spec.form)
    splits = load_splits(run)
    a, b = load(fp32), load(int8)
    exporter = exporter_for(run)
    held = exporter.held_out_nll(run, splits.test, n, seed, quality.onnx_call(a))
    if held is not None:
        metric = "perplexity"
        rf, rq = held, exporter.held_out_nll(run, splits.test, n, seed, quality.onnx_call(b))
        assert rq is not None
        ref, q, unit = rf["perplexity"], rq["perplexity"], "held-out predictions"
        extra: dict[str, Any] = {"n": rf["tokens"]}
    elif metric == "perplexity":
        windows = quality.token_windows(splits, min(n, 64))
        bos = int(a.manifest["model"]["bos_id"])
        rf = quality.perplexity(a.runtime.logits, windows, bos)  # type: ignore[attr-defined]
        rq = quality.perplexity(b.runtime.logits, windows, bos)  # type: ignore[attr-defined]
        ref, q, unit = rf["perplexity"], rq["perplexity"], "validation tokens"
        extra = {"n": rf["tokens"]}
    else:
        samplers = {"fp32": _sampler(a), "int8": _sampler(b)}
        res = quality.sample_quality(run, splits, samplers, n, seed)
        ref, q, unit = res["fp32"][metric], res["int8"][metric], f"samples ({res['features']} features)"
        extra = {"n": n, "detail": res}
    ok, rel = quality.within_bound(metric, ref, q)
    if not math.isfinite(q):
        ok = False
    return {"metric": metric, "fp32": ref, "int8": q, "relative_change": rel, "bound": quality.BOUNDS[metric],
            "within_bound": ok, "unit": unit, **extra}


def _sampler(exported: Any) -> quality.Sampler:
    def fn(n: int, seed: int, labels: np.ndarray | None) -> np.ndarray:
        return np.asarray(exported.sample(n, label=labels, seed=seed))

    return fn
