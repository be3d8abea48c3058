"""``genlab compare``: train families under one budget, evaluate all alike, write a side-by-side report.

Fairness: every family trains on the same split of the same data with the same seed and the same wall-clock budget
(training time only, as the trainer counts it), and every model is evaluated by the one evaluation path
(:func:`genlab.api.evaluate_run`) with the same options (same number of seeded samples, same reference data, same
feature networks). Existing runs can join (``runs=``) when they were trained on the same data. What is compared
and shown is the data's modality's: its summary columns, renderings and report sections.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genlab import checkpoint as ckpt
from genlab.config import build, parse_duration
from genlab.core import MODELS
from genlab.errors import ConfigError, GenlabError
from genlab.modalities.base import Evaluation, Modality, Progress, Splits, modality, resolve_kind
from genlab.report.html import Column
from genlab.run import Run


def families_for(mod: Modality) -> list[str]:
    """Every registered family that models data of modality ``mod``."""
    return [name for name, cls in MODELS.items() if set(cls.data_forms) & set(mod.forms)]


def image_families() -> list[str]:
    """Every registered family that models images."""
    return families_for(modality("image"))


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
            budget: str = "5m", seed: int = 0, out: str | Path = "runs/compare", retrain: bool = False,
            options: Mapping[str, Mapping[str, Any]] | None = None, grid_samples: int = 64,
            max_examples: int | None = None, progress: Progress | None = None,
            log: Callable[[str], None] | None = None, **eval_options: Any) -> dict[str, Any]:
    """Train (or take) one run per family, evaluate every run the same way, write ``report.html`` + ``results.json``.

    Arguments:
        data: built-in dataset, folder or file (the same split for all).
        families: families to train into ``out/<family>``; default every family that models ``data``, or none
            when ``runs`` are given.
        runs: existing run folders to include (trained on ``data``).
        budget: wall-clock training budget per family, e.g. ``"5m"``.
        seed: training seed of every family, and the sampling seed.
        out: folder for the new runs, ``report.html`` and ``results.json``.
        retrain: retrain a family whose run folder in ``out`` already exists (otherwise it is reused).
        options: extra ``genlab.train`` options per family (e.g. model sizes), the same budget still applies.
        grid_samples: samples of each family rendered in the report.
        max_examples: compute the likelihood on the first N test examples only (default: all).
        progress: ``fn(stage, done, total)``; log: ``fn(message)``.
        **eval_options: the modality's evaluation options, the same for every run (images: ``samples``,
            ``features``; text: ``continuations``).

    Returns:
        the ``results.json`` contents plus the paths of the two files.
    """
    from genlab.api import evaluate_run, load, load_splits, train

    progress = progress or (lambda stage, done, total: None)
    log = log or (lambda msg: None)
    out = Path(out)
    mod = modality(resolve_kind(data))
    opts: Any = build(mod.eval_options_cls, eval_options)  # bad options stop here, not after training
    parse_duration(budget)
    fams = list(families) if families is not None else ([] if runs else families_for(mod))
    for f in fams:
        if f not in families_for(mod):
            raise ConfigError(f"family '{f}' does not model {mod.kind} data; compare takes "
                              f"{', '.join(families_for(mod))} on {data}")
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
    first = load(next(iter(run_dirs.values())))
    splits = load_splits(first)
    results: dict[str, Any] = {"data": data, "kind": mod.kind, "budget": budget, "seed": seed,
                               **json.loads(json.dumps(dataclasses.asdict(opts))),
                               "reference": f"test split ({len(splits.test)} examples)",
                               "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "runs": {}}
    entries: dict[str, tuple[Run, Evaluation]] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    for name, run_dir in run_dirs.items():
        stage = lambda s, d, t, n=name: progress(f"{n}: {s}", d, t)  # noqa: E731
        try:
            run = load(run_dir)
            same = load_splits(run) if run.config["data"] != first.config["data"] else splits
            if not torch.equal(same.test.x, splits.test.x):
                raise ConfigError(f"{run_dir} uses a different test split (other data options); retrain it")
            seconds, steps, rows = _train_info(run_dir)
            t0 = time.perf_counter()
            ev = evaluate_run(run, max_examples=max_examples, seed=seed, splits=same, progress=stage,
                              **eval_options)
            entry: dict[str, Any] = {**ev.report, "run": str(run_dir),
                                     "params": sum(p.numel() for p in run.model.parameters()),
                                     "train_seconds": seconds, "steps": steps, "conditional": run.model.conditional,
                                     "eval_seconds": time.perf_counter() - t0}
            entry["flat"] = {"bits_per_dim": ev.report.get("bits_per_dim"), "params": entry["params"],
                             "train_seconds": seconds, "steps": steps, **mod.summary(ev.report)}
            results["runs"][name] = entry
            entries[name] = (run, ev)
            curves[name] = rows
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
    write_compare_report(report_path, results, mod, entries, curves, splits, grid_samples)
    progress("report", 1, 1)
    return {**results, "results": str(results_path), "report": str(report_path)}


COST_COLUMNS = [Column("params", "parameters"), Column("train_seconds", "train time (s)"),
                Column("steps", "steps"), Column("samples_per_s", "samples/s", True)]


def write_compare_report(path: Path, results: dict[str, Any], mod: Modality,
                         entries: Mapping[str, tuple[Run, Evaluation]], curves: Mapping[str, list[dict[str, Any]]],
                         splits: Splits, grid_samples: int = 64) -> Path:
    """Render the comparison as one self-contained HTML page: the modality's metric tables, likelihoods, cost,
    renderings of each run's samples, loss curves and the modality's own sections."""
    import html

    from genlab.report.html import image_block, loss_curves_png, media_block, metric_table, render, write_report

    rows = {n: r["flat"] for n, r in results["runs"].items()}

    def present(cols: Sequence[Column]) -> list[Column]:
        return [c for c in cols if any(r.get(c.key) is not None for r in rows.values())]

    sections = [(heading, metric_table(rows, present(cols)) + f"<p class='note'>{html.escape(note)} Best value per "
                 "column highlighted.</p>") for heading, note, cols in mod.columns() if present(cols)]
    lik_rows = {n: {"likelihood": r.get("likelihood"), "bits_per_dim": r.get("bits_per_dim")}
                for n, r in results["runs"].items()}
    sections.append(("Likelihood (bits/dim of the test data)",
                     metric_table(lik_rows, [Column("likelihood", "kind"), Column("bits_per_dim", "bits/dim", False)])
                     + "<p class='note'>exact: exact likelihood; bound: an upper bound on bits/dim; none: no "
                       "likelihood.</p>"))
    sections.append(("Cost", metric_table(rows, present(COST_COLUMNS))))
    shown = []
    for name, (run, ev) in entries.items():
        try:
            if ev.samples is None:
                g = torch.Generator(device=run.model.device).manual_seed(results["seed"])
                with torch.no_grad():
                    ev.samples = run.model.sample(grid_samples, generator=g).cpu()
            shown.append(media_block(name, *mod.render(run, ev.samples[:grid_samples])))
        except Exception as e:  # the report still shows everything else
            shown.append(f"<p class='note'>{html.escape(name)}: no samples ({html.escape(_why(e))})</p>")
    sections.append(("Samples", "".join(shown)))
    loss_png = loss_curves_png(dict(curves))
    if loss_png is not None:
        sections.append(("Training losses", image_block("loss per step", loss_png)))
    sections += mod.report_sections(entries, splits)
    if results.get("errors"):
        sections.append(("Notes", "<ul>" + "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>"
                                                   for k, v in results["errors"].items()) + "</ul>"))
    sub = (f"data {results['data']} · budget {results['budget']} per family · seed {results['seed']} · "
           f"{results['created']}")
    return write_report(path, render(f"genlab compare: {results['data']}", sections, sub))
