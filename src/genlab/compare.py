"""``genlab compare``: train image families under one budget, evaluate all alike, write a side-by-side report.

Fairness: every family trains on the same split of the same data with the same seed and the same wall-clock budget
(training time only, as the trainer counts it), and every model is evaluated on the same number of samples (seeded)
against the same reference features with the same feature networks. Existing runs can join (``runs=``) when
they were trained on the same data.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genlab import checkpoint as ckpt
from genlab.config import parse_duration
from genlab.core import MODELS
from genlab.errors import ConfigError, GenlabError

Progress = Callable[[str, int, int], None]


def image_families() -> list[str]:
    """Every registered family that models image data."""
    return [name for name, cls in MODELS.items() if "image" in cls.data_kinds]


def _flat(entry: dict[str, Any]) -> dict[str, Any]:
    """``{"classifier/fid": …, "classes/inception_score": …, "bits_per_dim": …}`` for tables."""
    flat: dict[str, Any] = {k: entry.get(k) for k in ("bits_per_dim", "params", "train_seconds", "steps")}
    img = entry.get("images", {})
    flat["samples_per_s"] = img.get("samples_per_s")
    for group in ("classifier", "inception", "classes", "memorization"):
        for k, v in img.get(group, {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                flat[f"{group}/{k}"] = float(v) if group != "classes" or k != "classes_hit" else v
    return flat


def _why(e: Exception) -> str:
    """One line about a failure: the message of a user error, type and message of anything else."""
    return str(e) if isinstance(e, GenlabError) else f"{type(e).__name__}: {e}".splitlines()[0]


def _train_info(run: Path) -> tuple[float | None, int | None, list[dict[str, Any]]]:
    """(training seconds, steps, metrics.jsonl rows) of a run folder."""
    rows: list[dict[str, Any]] = []
    p = run / "metrics.jsonl"
    if p.is_file():
        rows = [json.loads(r) for r in p.read_text().splitlines() if r.strip()]
    state = run / ckpt.STATE_JSON
    if state.is_file():
        js = json.loads(state.read_text())
        return float(js["elapsed"]), int(js["step"]), rows
    return (rows[-1].get("elapsed"), rows[-1].get("step"), rows) if rows else (None, None, rows)


def compare(data: str = "mnist", families: Sequence[str] | None = None, *, runs: Sequence[str | Path] = (),
            budget: str = "5m", seed: int = 0, samples: int = 1000, features: Sequence[str] | None = None,
            out: str | Path = "runs/compare", retrain: bool = False,
            options: Mapping[str, Mapping[str, Any]] | None = None, grid_samples: int = 64,
            max_examples: int | None = None,
            progress: Progress | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or take) one run per family, evaluate every run the same way, write ``report.html`` + ``results.json``.

    Arguments:
        data: built-in dataset, folder or ``.npz`` (the same split for all).
        families: families to train into ``out/<family>``; default every image family, or none when ``runs`` are
            given.
        runs: existing run folders to include (trained on ``data``).
        budget: wall-clock training budget per family, e.g. ``"5m"``.
        seed: training seed of every family, and the sampling seed.
        samples: samples per model for the image metrics.
        features: feature networks (default every one serving ``data``).
        out: folder for the new runs, ``report.html`` and ``results.json``.
        retrain: retrain a family whose run folder in ``out`` already exists (otherwise it is reused).
        options: extra ``genlab.train`` options per family (e.g. model sizes), the same budget still applies.
        grid_samples: samples in each family's grid in the report.
        max_examples: compute bits/dim on the first N test examples only (default: all).
        progress: ``fn(stage, done, total)``; log: ``fn(message)``.

    Returns:
        the ``results.json`` contents plus the paths of the two files.
    """
    from genlab.api import load, train
    from genlab.metrics.images import draw_samples, run_splits, sample_metrics
    from genlab.metrics.likelihood import likelihood_report

    progress = progress or (lambda stage, done, total: None)
    log = log or (lambda msg: None)
    out = Path(out)
    if samples < 2:
        raise ConfigError(f"--samples must be at least 2, got {samples}")
    parse_duration(budget)  # a bad budget stops here, not once per family
    fams = list(families) if families is not None else ([] if runs else image_families())
    for f in fams:
        if "image" not in MODELS[f].data_kinds:
            raise ConfigError(f"family '{f}' does not model images; compare takes image families "
                              f"({', '.join(image_families())})")
    run_dirs: dict[str, Path] = {}
    for r in runs:
        cfg = ckpt.read_run_config(r)
        if cfg["data"]["data"] != data:
            raise ConfigError(f"run {r} was trained on {cfg['data']['data']}, not {data}; pass --data "
                              f"{cfg['data']['data']} or leave the run out")
        run_dirs[Path(r).name if Path(r).name not in run_dirs else str(r)] = Path(r)
    if not fams and not run_dirs:
        raise ConfigError("nothing to compare: give --families and/or --runs")
    errors: dict[str, str] = {}
    for fam in fams:  # the trainer shows its own progress bar; evaluation stages report through ``progress``
        run_dir = out / fam
        if (run_dir / ckpt.WEIGHTS).is_file() and not retrain:
            log(f"{fam}: reusing {run_dir} (pass --retrain to train it again)")
        else:
            log(f"{fam}: training for {budget} (seed {seed}) into {run_dir}")
            try:
                train(fam, data, out=run_dir, overwrite=True, budget=budget, seed=seed,
                      **dict((options or {}).get(fam, {})))
            except Exception as e:  # one failing family must not sink a long comparison
                errors[fam] = f"training failed: {_why(e)}"
                log(f"{fam}: {errors[fam]}")
                continue
        run_dirs[fam] = run_dir

    if not run_dirs:
        raise ConfigError("every family failed to train: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    first = ckpt.read_run_config(next(iter(run_dirs.values())))
    splits = run_splits(first)
    ref = f"test split ({len(splits[1])} images)"
    results: dict[str, Any] = {"data": data, "budget": budget, "seed": seed, "samples": samples,
                               "features": list(features) if features else None, "reference": ref,
                               "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "runs": {}}
    visuals: dict[str, dict[str, Any]] = {}
    for name, run_dir in run_dirs.items():
        stage = lambda s, d, t, n=name: progress(f"{n}: {s}", d, t)  # noqa: E731
        try:
            model = load(run_dir)
            cfg = model.run_config  # type: ignore[attr-defined]
            same = run_splits(cfg) if cfg["data"] != first["data"] else splits
            if not torch.equal(same[1].x, splits[1].x):
                raise ConfigError(f"{run_dir} uses a different test split (other data options); retrain it")
            seconds, steps, rows = _train_info(run_dir)
            entry: dict[str, Any] = {"family": model.family, "run": str(run_dir),
                                     "params": sum(p.numel() for p in model.parameters()),
                                     "train_seconds": seconds, "steps": steps, "conditional": model.conditional}
            stage("likelihood", 0, 1)
            lik = likelihood_report(model, splits[1] if max_examples is None else splits[1].head(max_examples))
            stage("likelihood", 1, 1)
            entry["likelihood"] = lik["likelihood"]
            entry["bits_per_dim"] = lik.get("bits_per_dim")
            t0 = time.perf_counter()
            x, labels, rate = draw_samples(model, samples, seed=seed, progress=stage)
            entry["images"] = sample_metrics(x, data=data, train=splits[0], test=splits[1], requested=labels,
                                             features=features, progress=stage)
            entry["images"]["samples_per_s"] = rate
            entry["eval_seconds"] = time.perf_counter() - t0
            entry["flat"] = _flat(entry)
            results["runs"][name] = entry
            visuals[name] = {"grid": x[:grid_samples], "rows": rows, "samples": x}
            log(f"{name}: evaluated in {entry['eval_seconds']:.1f} s")
        except Exception as e:  # recorded in results.json and the report; the other runs still count
            errors[name] = f"evaluation failed: {_why(e)}"
            log(f"{name}: {errors[name]}")
    if errors:
        results["errors"] = errors
    out.mkdir(parents=True, exist_ok=True)
    results_path, report_path = out / "results.json", out / "report.html"
    ckpt.write_json(results_path, results)
    progress("report", 0, 1)
    write_compare_report(report_path, results, visuals, splits[0].x)
    progress("report", 1, 1)
    return {**results, "results": str(results_path), "report": str(report_path)}


SAMPLE_COLUMNS = [("classifier/fid", "FID (classifier)"), ("inception/fid", "FID (Inception)"),
                  ("classifier/kid", "KID (classifier)"), ("inception/kid", "KID (Inception)"),
                  ("classifier/precision", "precision"), ("classifier/recall", "recall"),
                  ("classifier/density", "density"), ("classifier/coverage", "coverage"),
                  ("inception/precision", "precision (Inc.)"), ("inception/recall", "recall (Inc.)")]
CLASS_COLUMNS = [("classes/inception_score", "IS (classifier)"), ("classes/class_accuracy", "class accuracy"),
                 ("classes/classes_hit", "classes hit"), ("classes/entropy_normalized", "class entropy / max"),
                 ("memorization/near_copy_share", "near-copies"), ("memorization/nn_train_mean", "NN train dist"),
                 ("memorization/nn_test_mean", "NN test dist")]
COST_COLUMNS = [("params", "parameters"), ("train_seconds", "train time (s)"), ("steps", "steps"),
                ("samples_per_s", "samples/s")]


def write_compare_report(path: Path, results: dict[str, Any], visuals: dict[str, dict[str, Any]],
                         train_x: torch.Tensor) -> Path:
    """Render the comparison as one self-contained HTML page."""
    import html

    from genlab.report.html import (
        grid_png,
        image_block,
        loss_curves_png,
        metric_table,
        pairs_png,
        render,
        write_report,
    )

    rows = {n: r["flat"] for n, r in results["runs"].items()}
    present = lambda cols: [c for c in cols if any(r.get(c[0]) is not None for r in rows.values())]  # noqa: E731
    lik_rows = {n: {"likelihood": r["likelihood"], "bits_per_dim": r["bits_per_dim"]}
                for n, r in results["runs"].items()}
    sections = [
        ("Sample quality", metric_table(rows, present(SAMPLE_COLUMNS))
         + f"<p class='note'>{results['samples']} samples per model against the {results['reference']}; best "
           "value per column highlighted. FID/KID: lower is better; the rest: higher is better.</p>"),
        ("Classes, mode coverage and memorization", metric_table(rows, present(CLASS_COLUMNS))
         + "<p class='note'>Near-copies: samples closer (in pixels) to a training image than half the median "
           "distance of test images to their nearest training image.</p>"),
        ("Likelihood (bits/dim of the 8-bit test data)",
         metric_table(lik_rows, [("likelihood", "kind"), ("bits_per_dim", "bits/dim")])
         + "<p class='note'>exact: exact likelihood; bound: an upper bound on bits/dim; none: no likelihood.</p>"),
        ("Cost", metric_table(rows, COST_COLUMNS)),
        ("Samples", "".join(image_block(n, grid_png(v["grid"].numpy())) for n, v in visuals.items())),
    ]
    curves = loss_curves_png({n: v["rows"] for n, v in visuals.items()})
    if curves is not None:
        sections.append(("Training losses", image_block("loss per step", curves)))
    pairs = []
    for n, r in results["runs"].items():
        closest = r["images"]["memorization"]["closest"]
        if closest:
            pairs.append(image_block(f"{n}: closest samples (top) and their nearest training images (bottom)",
                                     pairs_png(visuals[n]["samples"], train_x, closest)))
    sections.append(("Closest pairs to the training data", "".join(pairs)))
    notes = {f"{n}: {k}": v for n, r in results["runs"].items() for k, v in r["images"].get("notes", {}).items()}
    notes.update(results.get("errors", {}))
    if notes:
        sections.append(("Notes", "<ul>" + "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>"
                                                   for k, v in notes.items()) + "</ul>"))
    sub = (f"data {results['data']} · budget {results['budget']} per family · seed {results['seed']} · "
           f"{results['samples']} samples each · {results['created']}")
    return write_report(path, render(f"genlab compare: {results['data']}", sections, sub))
