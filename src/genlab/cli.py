"""The ``genlab`` command: a thin typer + rich layer over :mod:`genlab.api`.

Every error a user can cause prints one line (``error: …``) to stderr and exits with code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from genlab.errors import ConfigError, GenlabError, TrainingDiverged

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, sample and evaluate generative models: vae, gan, … on images and more.")
out = Console()
err = Console(stderr=True)

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _compare_extra() -> list[Any]:
    from genlab.report.html import Column

    return [Column("bits_per_dim", "bits/dim"), Column("samples_per_s", "samples/s")]


def _api() -> Any:
    """:mod:`genlab.api`, imported on first use (the registries filled), so that ``--help`` stays fast."""
    import genlab.api

    return genlab.api


def _options(family: str, args: list[str], data: str | None = None) -> dict[str, Any]:
    from genlab.api import option_classes
    from genlab.config import parse_cli_args

    return parse_cli_args(args, option_classes(family, data))


@app.command(context_settings=EXTRA, epilog="Every field of the family, trainer and data config is an option "
             "too (--lr 3e-4, --latent-dim 16, --budget 2m, …): `genlab models FAMILY` lists them.")
def train(ctx: typer.Context,
          family: Annotated[str, typer.Argument(help="model family, see `genlab models`")],
          data: Annotated[str | None, typer.Option(help="built-in dataset, image folder or .npz")] = None,
          out_dir: Annotated[Path | None, typer.Option("--out", help="run folder (default runs/…)")] = None,
          resume: Annotated[bool, typer.Option(help="continue the run in --out from its checkpoint")] = False,
          overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
          config: Annotated[Path | None, typer.Option(help="TOML/YAML file of options, or a packaged preset: "
                                                       "tiny")] = None) -> None:
    """Train a model and write a run folder (config.json, model.safetensors, metrics.jsonl, samples.png)."""
    api = _api()
    api.MODELS[family]  # unknown family → one-line error before anything else
    options = _options(family, list(ctx.args), data)
    if config is not None and not config.is_file():
        from genlab.presets import names, preset_file

        config = preset_file(str(config), family)  # `--config tiny`: a packaged preset
        if config is None:
            raise ConfigError(f"config file {ctx.params['config']} does not exist (packaged presets: "
                              f"{', '.join(names())})")
    interrupted: list[int] = []
    try:
        run = api.train(family, data, out=out_dir, resume=resume, overwrite=overwrite, config_file=config,
                        **options)
    except TrainingDiverged:
        raise
    s = run.summary
    if s.get("interrupted"):
        interrupted.append(s["step"])
    table = Table(title=f"{family} run", show_header=False)
    table.add_row("run folder", str(run.path))
    table.add_row("steps", str(s["step"]))
    table.add_row("time", f"{s['elapsed']:.1f} s ({s['steps_per_s']:.2f} steps/s)")
    if "precision" in s:
        table.add_row("speed", f"{s['precision']}{', compiled' if s.get('compile') else ''}")
    if "best_step" in s:
        how = "stopped early" if s.get("stopped_early") else "did not stop early"
        table.add_row("early stopping", f"{how}; kept step {s['best_step']} (test loss {s['best_test_loss']:.4f})")
    metrics = Path(run.path) / "metrics.jsonl"
    if metrics.is_file():
        import json

        rows = [json.loads(r) for r in metrics.read_text().splitlines() if r.strip()]
        last = {k: v for r in rows for k, v in r.items() if k.startswith(("loss", "test/"))}
        for k, v in last.items():
            table.add_row(k, f"{v:.4f}")
    out.print(table)
    if interrupted:
        err.print(f"interrupted at step {interrupted[0]}; continue with: genlab train {family} "
                  f"--out {run.path} --resume")


@app.command(context_settings=EXTRA, epilog="Families with sampling options (a diffusion sampler, a GPT prompt) and "
             "modalities with file options (--nrow of an image grid) take them as --field-name value too: "
             "`genlab models FAMILY` lists them.")
def sample(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder")],
           n: Annotated[int | None, typer.Option("-n", "--n", help="number of samples (default: 64 images, one "
                                                 "streamed text)")] = None,
           out_path: Annotated[Path | None, typer.Option("--out", help="output file (default samples.png; text is "
                                                         "printed)")] = None,
           fmt: Annotated[str | None, typer.Option("--format", help="file format, e.g. png (a grid) or npz "
                                                   "(arrays x, y); default: from --out")] = None,
           label: Annotated[int | None, typer.Option(help="class label for a conditional model")] = None,
           condition: Annotated[str | None, typer.Option(help="values the samples must have, e.g. cut=Ideal "
                                                         "(data kinds that take conditions)")] = None,
           seed: Annotated[int, typer.Option(help="random seed")] = 0,
           sign: Annotated[bool, typer.Option(help="sign the file with your key (`genlab keys init`): a C2PA "
                                              "manifest in PNG/JPEG, FILE.sig.json otherwise")] = False) -> None:
    """Draw samples from a trained run into a file in its data's format (or print text as it is generated); an
    exported folder (`genlab export`) is sampled with onnxruntime + numpy, without importing torch."""
    from genlab.export.folder import is_exported

    if is_exported(run):
        if sign:
            raise ConfigError("--sign works on run folders only (signing needs genlab's audit tools); drop --sign "
                              "to sample this exported folder")
        return _sample_exported(ctx, run, n, out_path, fmt, label, condition, seed)
    api = _api()
    from genlab.config import parse_cli_args, split_overrides

    if n is not None and n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    identity = None
    if sign:
        from genlab.audit.keys import load_identity

        if out_path is None:
            raise ConfigError("--sign needs --out FILE: printed samples cannot carry a signature")
        identity = load_identity()  # a missing key stops here, before anything is sampled
    if out_path is not None and not out_path.parent.exists():
        raise ConfigError(f"folder {out_path.parent} does not exist; create it or choose another --out")
    loaded = api.load(run)
    mod = loaded.modality
    if any(a == "--watermark" or a.startswith("--watermark=") for a in ctx.args) and not loaded.model.watermark:
        from genlab.audit.watermark import scheme_of

        scheme_of(loaded)  # one line naming the families that embed one
    classes = [c for c in (type(loaded.model).sample_options_cls, mod.output_options_cls) if c is not None]
    values = parse_cli_args(list(ctx.args), classes)
    s_opts, o_opts = split_overrides(values, classes) if len(classes) == 2 else (
        (values, {}) if type(loaded.model).sample_options_cls is not None else ({}, values))
    count = n or mod.default_samples
    if out_path is None and mod.prints_samples and fmt is None and condition is None:
        for piece in api.sample_text(loaded, count, label=label, seed=seed, **s_opts):
            sys.stdout.write(piece)
            sys.stdout.flush()
        return
    path = out_path or Path(f"samples.{mod.sample_formats[0]}")
    mod.sample_format(path, fmt)  # a bad --format stops before sampling
    x = api.sample(loaded, count, label=label, seed=seed, condition=condition, **s_opts)
    api.save_samples(loaded, x, path, fmt=fmt, labels=label, **o_opts)
    if identity is not None:
        from genlab.audit.provenance import provenance_record, sign_file

        signed = sign_file(path, provenance_record(loaded, seed=seed, n=count, options=s_opts), identity=identity)
        out.print(f"wrote {count} samples to {path}, signed ({signed.method}: {signed.signature_path})",
                  soft_wrap=True)
        return
    out.print(f"wrote {count} samples to {path}")


@app.command("eval", context_settings=EXTRA, epilog="Evaluation options of the run's data follow as "
             "--field-name value (images: --samples N --features classifier,inception; text: --continuations N), and "
             "evaluation-time model options (e.g. --iwae-k 1000 for the VAE).")
def eval_(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder")],
          max_examples: Annotated[int | None, typer.Option(help="use only the first N test examples")] = None,
          batch_size: Annotated[int, typer.Option(help="examples per forward pass")] = 100,
          seed: Annotated[int, typer.Option(help="seed of the samples scored")] = 0) -> None:
    """Test-set NLL and bits/dim where the family has a likelihood, plus the metrics of the run's data (images:
    FID, KID, precision/recall, density/coverage, IS, mode coverage, memorization; text: perplexity, bits/char);
    writes eval.json in the run folder."""
    api = _api()
    from genlab.config import parse_cli_args

    options = parse_cli_args(list(ctx.args), list(api.eval_option_classes(run)))
    loaded = api.load(run)
    with progress_bar() as progress:
        res = api.evaluate(loaded, max_examples=max_examples, batch_size=batch_size, seed=seed, progress=progress,
                           **options)
    table = Table(title=f"{res['family']} on {res['data']} ({res['split']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in loaded.modality.rows(res):
        table.add_row(name, value)
    if "classifier" in res:  # families that classify (ssvae)
        table.add_row("classifier accuracy (test)", f"{res['classifier']['accuracy']:.4f} "
                      f"({res['classifier']['n_examples']} examples)")
    out.print(table)
    out.print(f"wrote {Path(run) / 'eval.json'}")


def _type_str(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


@app.command()
def models(family: Annotated[str | None, typer.Argument(help="show every option of this family")] = None) -> None:
    """List the model families, or every option of one family."""
    api = _api()
    from genlab.api import capabilities, option_classes

    if family is None:
        table = Table(title="model families")
        for col in ("family", "data", "likelihood", "latent space", "about"):
            table.add_column(col)
        for name, cls in api.MODELS.items():
            caps = capabilities(name)
            kinds = [m.kind for _, m in api.MODALITIES.ordered() if set(m.forms) & set(cls.data_forms)]
            hows = set(caps["likelihood"].values())
            lik = hows.pop() if len(hows) == 1 else ", ".join(f"{f}: {h}" for f, h in caps["likelihood"].items())
            doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
            table.add_row(name, ", ".join(kinds), lik, "yes" if caps["latent_space"] else "no", doc)
        out.print(table)
        return
    api.MODELS[family]
    sample_cls = api.MODELS[family].sample_options_cls
    train_cls, data_cls, model_cls = option_classes(family)
    mod = next(m for _, m in api.MODALITIES.ordered() if m.config_cls is data_cls)
    extra = [c for c in (sample_cls, mod.output_options_cls, mod.eval_options_cls) if c is not None and
             dataclasses.fields(c)]
    for cls in [train_cls, data_cls, model_cls, *extra]:
        defaults = api.MODELS[family].train_defaults if cls.__name__ == "TrainConfig" else {}
        hints = typing.get_type_hints(cls)
        table = Table(title=f"{cls.__name__} options")
        for col in ("option", "type", "default"):
            table.add_column(col)
        for f in dataclasses.fields(cls):
            default = defaults.get(f.name, f.default)
            table.add_row("--" + f.name.replace("_", "-"), _type_str(hints[f.name]), str(default))
        out.print(table)


@app.command("import-gpt2")
def import_gpt2(source: Annotated[Path, typer.Argument(help="local Hugging Face GPT-2 folder (config.json + "
                                                            "model.safetensors, with its vocabulary file when it "
                                                            "has one)")],
                out_dir: Annotated[Path, typer.Option("--out", help="run folder to write")]) -> None:
    """Turn local GPT-2 weights into a gpt run folder that `genlab sample` and `--init-from` accept."""
    _api()
    from genlab.models.gpt import import_gpt2 as convert

    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} already exists and is not empty; choose another --out")
    out.print(f"wrote {convert(source, out_dir)}")


@app.command()
def datasets() -> None:
    """List the built-in datasets (user data: a folder of images or an .npz also works as --data)."""
    api = _api()
    table = Table(title="built-in datasets")
    for col in ("name", "kind", "about"):
        table.add_column(col)
    for name, entry in api.DATASETS.items():
        table.add_row(name, entry.kind, entry.about)
    out.print(table)


@app.command(context_settings=EXTRA, epilog="Sampling options of the family (--sampler, --steps, --resample, …) "
             "follow as --field-name value: `genlab models FAMILY` lists them.")
def inpaint(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder (a diffusion run)")],
            images: Annotated[Path, typer.Option(help=".npz with array x, or one PNG/JPEG image")],
            box: Annotated[str | None, typer.Option(help="region to fill: x0,y0,x1,y1 in pixels")] = None,
            mask: Annotated[Path | None, typer.Option(help="PNG mask, white = fill")] = None,
            out_path: Annotated[Path, typer.Option("--out", help="output .png (inputs above, results below) "
                                                    "or .npz (array x)")] = Path("inpainted.png"),
            label: Annotated[int | None, typer.Option(help="class label for a conditional model")] = None,
            seed: Annotated[int, typer.Option(help="random seed")] = 0) -> None:
    """Fill a masked region of given images (RePaint, arXiv:2201.09865)."""
    api = _api()
    from genlab.config import parse_cli_args

    if not out_path.parent.exists():
        raise ConfigError(f"folder {out_path.parent} does not exist; create it or choose another --out")
    loaded = api.load(run)
    cls = type(loaded.model).sample_options_cls
    options = parse_cli_args(list(ctx.args), [cls] if cls is not None else [])
    path, count = api.inpaint_files(loaded, images, out_path, box=box, mask=mask, label=label, seed=seed,
                                        **options)
    out.print(f"wrote {count} inpainted examples to {path}")


@contextlib.contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display for ``fn(stage, done, total)`` callbacks, one bar per stage (stderr, terminals only).

    The display starts at the first update, so a trainer's own progress bar may run before it (``compare``).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, disable=not err.is_terminal)
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


@app.command(context_settings=EXTRA, epilog="Evaluation options of the data's modality follow as --field-name "
             "value, the same for every run (images: --samples 1000 --features classifier,inception; text: "
             "--continuations 32).")
def compare(ctx: typer.Context,
            data: Annotated[str, typer.Option(help="built-in dataset, folder or file")] = "mnist",
            families: Annotated[str | None, typer.Option(help="comma-separated families to train "
                                                         "(default: every family that models the data)")] = None,
            runs: Annotated[str | None, typer.Option(help="comma-separated existing run folders to compare")] = None,
            budget: Annotated[str, typer.Option(help="training wall-clock budget per family, e.g. 5m")] = "5m",
            seed: Annotated[int, typer.Option(help="seed of every training run and of sampling")] = 0,
            out_dir: Annotated[Path, typer.Option("--out", help="folder for the runs, report.html and "
                                                  "results.json")] = Path("runs/compare"),
            retrain: Annotated[bool, typer.Option(help="retrain families whose run folder already exists")] = False,
            max_examples: Annotated[int | None, typer.Option(help="likelihood on the first N test examples only")]
            = None) -> None:
    """Train families with the same budget, seed and split (or take existing runs), evaluate all with the same
    metrics and sample counts, and write report.html and results.json."""
    api = _api()
    from genlab.compare import compare as run_compare
    from genlab.config import parse_cli_args

    mod = api.modality(api.resolve_kind(data))
    options = parse_cli_args(list(ctx.args), [mod.eval_options_cls])
    fams = [f.strip() for f in families.split(",") if f.strip()] if families else None
    run_list = [Path(r.strip()) for r in runs.split(",") if r.strip()] if runs else []
    with progress_bar() as progress:
        res = run_compare(data, fams, runs=run_list, budget=budget, seed=seed, out=out_dir, retrain=retrain,
                          max_examples=max_examples, progress=progress,
                          log=lambda msg: err.print(msg, highlight=False), **options)
    cols = [c for _, _, section in mod.columns()[:1] for c in section][:8]
    table = Table(title=f"compare on {res['data']} ({res['reference']})")
    table.add_column("run")
    for c in [*cols, *_compare_extra()]:
        table.add_column(c.header, justify="right")
    for name, r in res["runs"].items():
        flat = r["flat"]
        table.add_row(name, *[f"{flat[c.key]:.4g}" if isinstance(flat.get(c.key), int | float) else "–"
                              for c in [*cols, *_compare_extra()]])
    out.print(table)
    for name, why in res.get("errors", {}).items():
        err.print(f"{name}: {why}", highlight=False)
    out.print(f"wrote {res['report']} and {res['results']}")


keys_app = typer.Typer(no_args_is_help=True, help="Your signing key for provenance manifests (genlab sample --sign).")
app.add_typer(keys_app, name="keys")


@keys_app.command("init")
def keys_init(keys: Annotated[Path | None, typer.Option(help="key folder (default $GENLAB_KEYS or "
                                                         "~/.config/genlab/keys)")] = None,
              name: Annotated[str, typer.Option(help="who signs: a person, lab or server")] = "genlab user",
              alg: Annotated[str, typer.Option(help="es256 (ECDSA P-256) or ed25519")] = "es256",
              force: Annotated[bool, typer.Option(help="replace an existing key")] = False) -> None:
    """Create your signing key and certificate chain (a local root, discarded after use); share root.pem with
    whoever should trust your files."""
    from genlab.audit.keys import ROOT_FILE, init_keys

    ident = init_keys(keys, name=name, alg=alg, force=force)
    out.print(f"created a {ident.alg} signing key in {ident.directory} ({ident.subject}, SHA-256 "
              f"{ident.fingerprint[:16]}…); others trust your files with --trust {ident.directory / ROOT_FILE}",
              soft_wrap=True)


@app.command()
def verify(file: Annotated[Path, typer.Argument(help="a signed PNG/JPEG, or any file with FILE.sig.json")],
           trust: Annotated[list[Path] | None, typer.Option(help="a root certificate (PEM) to trust; repeatable")]
           = None,
           keys: Annotated[Path | None, typer.Option(help="your key folder, whose root you trust")] = None,
           as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False) -> None:
    """Verify a file's provenance: valid (exit 0), unsigned (exit 1) or invalid/tampered (one line, exit 2)."""
    import json

    from genlab.audit.provenance import verify_file

    v = verify_file(file, keys=keys, trust=trust or [])
    if v.status == "invalid":
        raise GenlabError(v.summary)
    if v.status == "valid" and not v.genlab:
        raise GenlabError(f"{file}: carries a foreign C2PA manifest (made by {v.generator or 'an unknown tool'}, "
                          "signature valid) with no genlab provenance record")
    if as_json:
        out.print_json(json.dumps(v.to_json()))
    else:
        out.print(v.summary, highlight=False, soft_wrap=True)
        for k, val in v.record.items():
            out.print(f"  {k}: {val}", highlight=False, soft_wrap=True)
        for problem in v.problems:
            err.print(f"note: {problem}", highlight=False, soft_wrap=True)
    if v.status == "unsigned":
        raise typer.Exit(1)


@app.command("detect-watermark", context_settings=EXTRA, epilog="Scheme options follow as --field-name value: "
             "Tree-Ring --steps 50 --alpha 0.01 --test correlation|distance; green list --threshold 4.")
def detect_watermark(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder that may have made "
                                                                             "the samples")],
                     file: Annotated[Path, typer.Argument(help="samples: .npz/.png images, .txt text")],
                     key: Annotated[str, typer.Option(help="the watermark key")]) -> None:
    """Test samples for a run's watermark (Tree-Ring by DDIM inversion for diffusion, green-list z-test for GPT)."""
    api = _api()
    from genlab.audit.watermark import detect

    raw = list(ctx.args)
    opts: dict[str, Any] = {}
    for i in range(0, len(raw), 2):
        if not raw[i].startswith("--") or i + 1 >= len(raw):
            raise ConfigError(f"unexpected argument {raw[i]!r}; options look like --field-name value")
        name, value = raw[i][2:].replace("-", "_"), raw[i + 1]
        try:
            opts[name] = value if name == "test" else int(value) if name == "steps" else float(value)
        except ValueError:
            raise ConfigError(f"bad value {value!r} for {raw[i]}: expected a number") from None
    res = detect(api.load(run), file, key, **opts)
    table = Table(title=f"{res['scheme']} watermark in {file}")
    table.add_column("sample")
    table.add_column("z" if res["scheme"] == "green-list" else "p-value", justify="right")
    table.add_column("watermarked")
    for i, s_ in enumerate(res["samples"][:50]):
        table.add_row(str(i), f"{s_['z']:.2f}" if "z" in s_ else f"{s_['p_value']:.3g}", "yes" if s_["detected"]
                      else "no")
    out.print(table)
    out.print(f"{res['detected']} of {res['n']} samples carry the watermark of this key", soft_wrap=True)


@app.command(context_settings=EXTRA, epilog="Options: --samples N (generated samples scored), --members N "
             "(membership-inference examples), --seed S.")
def audit(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder")]) -> None:
    """Memorization, privacy and bias audit of a run: writes audit.json, MODEL_CARD.md and report.html's Audit
    section."""
    api = _api()
    from genlab.audit.model_card import AuditOptions, audit_rows
    from genlab.audit.model_card import audit as run_audit
    from genlab.config import parse_cli_args

    options = parse_cli_args(list(ctx.args), [AuditOptions])
    res = run_audit(api.load(run), **options)
    table = Table(title=f"audit of {run}")
    table.add_column("figure")
    table.add_column("value")
    for k, v in audit_rows(res):
        table.add_row(k, v)
    out.print(table)
    out.print(f"wrote {', '.join(res.get('files', []))}", soft_wrap=True)


def _load_with_options(api: Any, run: Path, args: list[str]) -> Any:
    """Load a run and apply evaluation-time model settings given as ``--field value`` (``--iwae-k``, …)."""
    from genlab.apps import configure
    from genlab.config import parse_cli_args

    loaded = api.load(run)
    return configure(loaded, parse_cli_args(args, [type(loaded.model).config_cls]))


@app.command(context_settings=EXTRA, epilog="Evaluation-time model settings follow as --field-name value "
             "(--iwae-k 16 for a VAE, --bound-timesteps 4 for diffusion, --eval-samples 4 for a flow).")
def anomaly(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder: the model of normal data")],
            data: Annotated[str | None, typer.Option(help="data to score: a folder or file the run's modality "
                                                     "reads (default: the run's test split)")] = None,
            out_path: Annotated[Path, typer.Option("--out", help="CSV of scores to write")] = Path("scores.csv"),
            anomalies: Annotated[str | None, typer.Option(help="data known to be anomalous: also scored, and the "
                                                          "AUROC of every score printed")] = None,
            reference: Annotated[Path | None, typer.Option(help="a generic run of the same data layout, for the "
                                                           "likelihood-ratio score")] = None,
            scores: Annotated[str | None, typer.Option(help="comma-separated scores: nll, complexity, ratio, "
                                                       "recon (default: all the run gives)")] = None,
            batch_size: Annotated[int, typer.Option(help="examples per forward pass")] = 100) -> None:
    """Anomaly scores (higher = more anomalous): -log p or the family's bound in bits/dim, a complexity-corrected
    score, a likelihood ratio against --reference, and reconstruction error for VAEs; writes a CSV."""
    api = _api()
    from genlab.apps.anomaly import anomaly as score_data

    loaded = _load_with_options(api, run, list(ctx.args))
    ref = api.load(reference) if reference is not None else None
    names = [s.strip() for s in scores.split(",") if s.strip()] if scores else None
    res = score_data(loaded, data, out_path, anomalies=anomalies, scores=names, reference=ref, batch_size=batch_size)
    table = Table(title=f"anomaly scores of {res['n']} examples ({loaded.family})")
    for col in ("score", "mean", *(["AUROC"] if "auroc" in res else [])):
        table.add_column(col, justify="right" if col != "score" else "left")
    for s in res["scores"]:
        table.add_row(s, f"{res['mean'][s]:.4f}", *([f"{res['auroc'][s]:.4f}"] if "auroc" in res else []))
    out.print(table)
    out.print(f"wrote {res['out']}")


@app.command(context_settings=EXTRA, epilog="Sampling options of the family (--steps, --sampler, --eta) follow as "
             "--field-name value.")
def denoise(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder (diffusion, or vae/ssvae)")],
            images: Annotated[Path, typer.Option(help=".npz with array x (floats on the [0, 1] scale, or uint8), "
                                                 "or one PNG/JPEG")],
            sigma: Annotated[float, typer.Option(help="noise standard deviation on the [0, 1] pixel scale")],
            out_path: Annotated[Path, typer.Option("--out", help="output .png (noisy above, clean below) or .npz")]
            = Path("clean.png"),
            consistency: Annotated[float, typer.Option(help="weight of the noisy image against the model's "
                                                       "estimate at each reverse step (diffusion; 0 = none, the "
                                                       "default: it measured best)")] = 0.0,
            label: Annotated[int | None, typer.Option(help="class label for a conditional model")] = None,
            seed: Annotated[int, typer.Option(help="random seed")] = 0) -> None:
    """Remove Gaussian noise of a known level: diffusion runs its reverse process from the noisy image at the
    matching noise level (with data consistency), a VAE encodes and decodes it."""
    api = _api()
    from genlab.apps.denoise import denoise_files
    from genlab.config import parse_cli_args

    loaded = api.load(run)
    cls = type(loaded.model).sample_options_cls
    options = parse_cli_args(list(ctx.args), [cls] if cls is not None else [])
    path, count = denoise_files(loaded, images, sigma, out_path, label=label, seed=seed, consistency=consistency,
                                **options)
    out.print(f"wrote {count} denoised examples to {path}")


@app.command(context_settings=EXTRA, epilog="Sampling options of the family follow as --field-name value.")
def augment(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="a class-conditional run folder")],
            classifier: Annotated[str | None, typer.Option(help="cnn (images) or boosting (any numeric data); "
                                                           "default: the first that reads the data")] = None,
            labels: Annotated[int, typer.Option(help="real labelled training examples (even over classes)")] = 100,
            synthetic: Annotated[str, typer.Option(help="comma-separated numbers of synthetic examples to add")]
            = "1000,5000",
            classifier_steps: Annotated[int | None, typer.Option(help="classifier training steps (default per "
                                                                 "classifier)")] = None,
            seed: Annotated[int, typer.Option(help="seed of the classifier and of sampling")] = 0,
            out_path: Annotated[Path | None, typer.Option("--out", help="also write the results as JSON")] = None
            ) -> None:
    """Test accuracy of a fixed classifier trained on a few real labels, with and without class-conditional
    synthetic examples from the run."""
    api = _api()
    from genlab.apps.augment import augment as run_augment
    from genlab.checkpoint import write_json
    from genlab.config import parse_cli_args

    if out_path is not None and not out_path.parent.exists():
        raise ConfigError(f"folder {out_path.parent} does not exist; create it or choose another --out")
    try:
        sizes = [int(v) for v in synthetic.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"bad --synthetic {synthetic!r}; write numbers such as 1000,5000") from None
    loaded = api.load(run)
    cls = type(loaded.model).sample_options_cls
    options = parse_cli_args(list(ctx.args), [cls] if cls is not None else [])
    res = run_augment(loaded, labels=labels, synthetic_sizes=sizes, classifier=classifier,
                      classifier_steps=classifier_steps, seed=seed, **options)
    table = Table(title=f"{res['classifier']} with {res['labels']} real labels, {res['n_test']} test examples")
    table.add_column("training data")
    table.add_column("test accuracy", justify="right")
    table.add_row(f"{res['labels']} real", f"{res['real_only']:.4f}")
    for n, acc in res["with_synthetic"].items():
        table.add_row(f"{res['labels']} real + {n} synthetic ({res['family']})", f"{acc:.4f}")
    out.print(table)
    if out_path is not None:
        write_json(out_path, res)
        out.print(f"wrote {out_path}")


@app.command(context_settings=EXTRA, epilog="Model settings such as --inversion-steps (diffusion) follow as "
             "--field-name value.")
def interpolate(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder (vae, ssvae, flow, "
                                                                          "diffusion)")],
                source: Annotated[Path, typer.Option("--from", help="start example(s): an image, an .npz, …")],
                target: Annotated[Path, typer.Option("--to", help="end example(s), as many as --from")],
                steps: Annotated[int, typer.Option(help="points per path, both ends included")] = 8,
                out_path: Annotated[Path, typer.Option("--out", help="output file (a grid: one row per path)")]
                = Path("path.png"),
                label: Annotated[int | None, typer.Option(help="class label for a conditional model")] = None
                ) -> None:
    """Walk the latent space between given examples: slerp for Gaussian latents (VAE, DDIM-inverted diffusion),
    straight lines for flows, decoded at every step."""
    api = _api()
    from genlab.apps.latent import interpolate_files

    loaded = _load_with_options(api, run, list(ctx.args))
    path, count = interpolate_files(loaded, source, target, out_path, steps=steps, label=label)
    out.print(f"wrote {count} path(s) of {steps} steps to {path}")


@app.command(context_settings=EXTRA, epilog="Model settings such as --inversion-steps (diffusion) follow as "
             "--field-name value.")
def edit(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder trained on labelled data")],
         images: Annotated[Path, typer.Option(help="examples to edit: an .npz (x, optional y), an image, …")],
         attribute: Annotated[str, typer.Option(help="class index or name whose direction to follow")],
         strength: Annotated[float, typer.Option(help="multiple of the direction to add (negative: away)")] = 1.0,
         out_path: Annotated[Path, typer.Option("--out", help="output file (an image grid: inputs above edits)")]
         = Path("edited.png"),
         per_class: Annotated[int, typer.Option(help="training examples per class for the class means")] = 100,
         label: Annotated[int | None, typer.Option(help="the examples' label for a conditional model")] = None
         ) -> None:
    """Move examples along a learned attribute direction (difference of class means in latent space)."""
    api = _api()
    from genlab.apps.latent import edit_files

    loaded = _load_with_options(api, run, list(ctx.args))
    path, count = edit_files(loaded, images, out_path, attribute=attribute, strength=strength, label=label,
                             per_class=per_class)
    out.print(f"wrote {count} edited examples to {path}")

@app.command()
def serve(runs: Annotated[list[str], typer.Argument(help="run folders to serve (PATH or NAME=PATH)")],
          host: Annotated[str, typer.Option(help="address to bind; beyond loopback it needs $GENLAB_API_KEY")]
          = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port")] = 8000,
          db: Annotated[str, typer.Option(help="ratings database: a SQLite file or a postgresql:// URL")]
          = "ratings.sqlite",
          max_n: Annotated[int, typer.Option(help="most samples per request")] = 16,
          max_tokens: Annotated[int, typer.Option(help="most tokens per text sample")] = 512,
          max_steps: Annotated[int, typer.Option(help="most sampler steps per request")] = 250,
          timeout: Annotated[float, typer.Option(help="seconds a request may take")] = 60.0,
          queue_size: Annotated[int, typer.Option(help="waiting requests per model before 429")] = 32,
          max_batch: Annotated[int, typer.Option(help="most samples per micro-batched model call")] = 64,
          batching: Annotated[bool, typer.Option(help="micro-batch concurrent requests to one model")] = True,
          batch_wait: Annotated[float, typer.Option(help="most seconds to wait for a batch to gather")] = 0.03,
          drift_window: Annotated[int, typer.Option(help="served samples per drift window (0 = off)")] = 500,
          drift_options: Annotated[str, typer.Option(help="JSON sampling options of the drift reference, e.g. "
                                                     "'{\"max_tokens\": 64}'")] = "{}",
          gold_rate: Annotated[float, typer.Option(help="share of arena pairs that are gold (attention) pairs")]
          = 0.1,
          device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
          threads: Annotated[int | None, typer.Option(help="PyTorch CPU threads for the models (default: the "
                                                           "cores less one, leaving one to HTTP)")] = None,
          log_level: Annotated[str, typer.Option(help="uvicorn log level: info logs every request")] = "info"
          ) -> None:
    """Serve runs over HTTP: OpenAI-compatible API, a web page with a gallery, arena and drift monitor."""
    import json

    from genlab.serve import ServeConfig
    from genlab.serve import serve as run_server

    try:
        opts = json.loads(drift_options)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--drift-options is not JSON ({e.msg})") from None
    if not isinstance(opts, dict):
        raise ConfigError("--drift-options must be a JSON object")
    cfg = ServeConfig(host=host, port=port, db=db, max_n=max_n, max_tokens=max_tokens, max_steps=max_steps,
                      timeout=timeout, queue_size=queue_size, max_batch=max_batch, batching=batching,
                      batch_wait=batch_wait,
                      drift_window=drift_window, drift_options=opts, gold_rate=gold_rate, device=device,
                      threads=threads)
    if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise ConfigError(f"--log-level must be critical, error, warning, info, debug or trace, got {log_level!r}")
    run_server(runs, cfg, log_level=log_level, ready=lambda h, p: err.print(f"genlab serving {len(runs)} run(s) on http://{h}:{p}/",
                                                       highlight=False))


@app.command()
def leaderboard(db: Annotated[str, typer.Option(help="ratings database: a SQLite file or a postgresql:// URL")]
                = "ratings.sqlite",
                rounds: Annotated[int, typer.Option(help="bootstrap rounds of the 95 % intervals")] = 1000,
                min_gold_votes: Annotated[int, typer.Option(help="gold votes before a rater can be excluded")] = 3,
                min_gold_accuracy: Annotated[float, typer.Option(help="raters below this gold accuracy are "
                                                                 "excluded")] = 0.75,
                anchor: Annotated[str | None, typer.Option(help="model pinned at 1000 (default: the mean)")]
                = None,
                as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False) -> None:
    """Bradley–Terry ranking of the arena votes (Elo scale, 95 % bootstrap intervals, position bias)."""
    from genlab.serve import leaderboard as rank

    res = rank(db, rounds=rounds, min_gold_votes=min_gold_votes, min_gold_accuracy=min_gold_accuracy,
               anchor=anchor)
    if as_json:
        import json

        out.print_json(json.dumps(res))
        return
    table = Table(title=f"leaderboard ({res['votes']} votes, {rounds} bootstrap rounds)")
    for col in ("rank", "model", "rating", "95 % interval", "votes", "W / L / T"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in res["models"]:
        table.add_row(str(r["rank"]), r["model"], f"{r['rating']:.0f}", f"{r['lower']:.0f} – {r['upper']:.0f}",
                      str(r["votes"]), f"{r['wins']} / {r['losses']} / {r['ties']}")
    out.print(table)
    pb = res["position_bias"]
    if pb is not None:
        out.print(f"position bias: left side {pb['elo']:+.0f} Elo ({pb['lower']:+.0f} … {pb['upper']:+.0f}), "
                  f"left wins {100 * pb['left_win_rate']:.1f}% of {pb['decisive_votes']} decisive votes")
    ex = res["raters"]["excluded"]
    out.print(f"raters: {res['raters']['total']}, excluded {len(ex)}"
              + "".join(f"\n  {r['rater']}: {r['gold_correct']}/{r['gold_votes']} gold correct" for r in ex))


@app.command(context_settings=EXTRA, epilog="Sampling options of the family (--steps) follow as --field-name value.")
def harmonize(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder (diffusion on chorales)")],
              melody: Annotated[Path, typer.Option(help="MIDI/MusicXML melody (or a four-part file, whose soprano "
                                                   "is kept), or a folder of them")],
              out_path: Annotated[Path, typer.Option("--out", help="output folder (.mid, .musicxml, .wav, .png per "
                                                     "melody) or one .mid/.musicxml/.wav/.png/.npz file")]
              = Path("harmonized"),
              voices: Annotated[str, typer.Option(help="voices to fill, letters of SATB, optionally with 16ths: "
                                                  "ATB:0-32")] = "ATB",
              tempo: Annotated[float, typer.Option(help="quarter notes per minute of the MIDI and audio")] = 80.0,
              program: Annotated[int, typer.Option(help="General MIDI program (19 organ, 0 piano, 52 choir)")] = 19,
              seed: Annotated[int, typer.Option(help="random seed")] = 0) -> None:
    """Fill alto, tenor and bass (or any voices) under a given soprano: grid inpainting with a music run."""
    api = _api()
    from genlab.apps.harmonize import harmonize as run_harmonize
    from genlab.config import parse_cli_args

    loaded = api.load(run)
    cls = type(loaded.model).sample_options_cls
    options = parse_cli_args(list(ctx.args), [cls] if cls is not None else [])
    res = run_harmonize(loaded, melody, out_path, voices=voices, seed=seed, tempo=tempo, program=program,
                        **options)
    for why, names in res.skipped.items():
        err.print(f"skipped {len(names)} file{'s' if len(names) != 1 else ''}: {why} ({', '.join(names[:3])}"
                  f"{', …' if len(names) > 3 else ''})", highlight=False)
    out.print(f"wrote {len(res.names)} harmonisation{'s' if len(res.names) != 1 else ''} to {res.path}")
def _sample_exported(ctx: typer.Context, folder: Path, n: int | None, out_path: Path | None, fmt: str | None,
                     label: int | None, condition: str | None, seed: int) -> None:
    """`genlab sample EXPORTED_FOLDER`: the torch-free runtime (nothing here may import torch)."""
    from genlab.config import parse_cli_args, split_overrides
    from genlab.errors import CapabilityError
    from genlab.export.runtime import load

    if n is not None and n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    if out_path is not None and not out_path.parent.exists():
        raise ConfigError(f"folder {out_path.parent} does not exist; create it or choose another --out")
    model = load(folder)
    writer = model.writer
    classes = [c for c in (model.runtime.options_cls, writer.options_cls) if c is not None]
    parts = dict(zip(classes, split_overrides(parse_cli_args(list(ctx.args), classes), classes), strict=True))
    s_opts = parts.get(model.runtime.options_cls, {}) if model.runtime.options_cls is not None else {}
    if condition is not None:
        prompt = writer.condition_prompt(condition)
        o_cls = model.runtime.options_cls
        if o_cls is None or "prompt" not in {f.name for f in dataclasses.fields(o_cls)}:
            raise CapabilityError(f"an exported {model.family} model cannot be prompted, so it cannot take a "
                                  "--condition")
        if s_opts.get("prompt"):
            raise ConfigError("give --condition or --prompt, not both")
        s_opts["prompt"] = prompt
    o_opts: dict[str, Any] = {}
    if writer.options_cls is not None:
        import dataclasses as dc

        from genlab.config import build

        o_opts = dc.asdict(build(writer.options_cls, parts.get(writer.options_cls, {})))
    count = n or writer.default_samples
    if out_path is None and writer.prints and fmt is None:
        if count == 1 and label is None and writer.streams:
            for piece in _stream_exported(model, seed, s_opts):
                sys.stdout.write(piece)
                sys.stdout.flush()
            return
        sys.stdout.write(writer.show(model.sample(count, label=label, seed=seed, **s_opts)))
        return
    path = out_path or Path(f"samples.{writer.formats[0]}")
    chosen = writer.format_of(path, fmt)  # a bad --format stops before sampling
    x = model.sample(count, label=label, seed=seed, **s_opts)
    labels = None if label is None else [label] * count
    import numpy as np

    writer.write(x, path, chosen, None if labels is None else np.asarray(labels), o_opts)
    out.print(f"wrote {count} samples to {path}")


def _stream_exported(model: Any, seed: int, options: dict[str, Any]) -> Iterator[str]:
    """The prompt, then one exported token model's sample as text while it is generated (a split UTF-8 character
    waits for its rest), cut before the first stop string."""
    from genlab.data.vocab import text_pieces

    tok = model.writer.tokenizer
    prompt = str(options.get("prompt", ""))
    tok.encode(prompt)  # a bad prompt fails before anything is printed
    yield from text_pieces(prompt, (int(t[0]) for t in model.stream(seed=seed, **options)), tok.decode,
                           tuple(options.get("stop", ())))


@app.command("export")
def export_(run: Annotated[Path, typer.Argument(help="run folder")],
            out_dir: Annotated[Path, typer.Option("--out", help="exported folder to write, e.g. model.onnx.d")],
            fmt: Annotated[str, typer.Option("--format", help="export format")] = "onnx",
            quantize: Annotated[str | None, typer.Option(help="int8: dynamic for GPT/MLP graphs, static QDQ for "
                                                         "convolutional graphs (needs --calibrate)")] = None,
            calibrate: Annotated[int | None, typer.Option(help="calibration samples for static int8 "
                                                          "quantization")] = None,
            check_samples: Annotated[int, typer.Option(help="samples the int8 quality check compares (token "
                                                       "models: validation windows, at most 64)")] = 256,
            opset: Annotated[int, typer.Option(help="ONNX opset")] = 20,
            overwrite: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
            seed: Annotated[int, typer.Option(help="seed of calibration and check inputs")] = 0) -> None:
    """Export a run's sampling network to ONNX, parity-checked against PyTorch, optionally quantized to int8 (and
    refused, with the measured loss, when int8 breaks quality). `genlab sample DIR` then runs without torch."""
    _api()
    from genlab.export.pipeline import export_run

    m = export_run(run, out_dir, fmt=fmt, quantize=quantize, calibrate=calibrate, opset=opset,
                   check_samples=check_samples, seed=seed, overwrite=overwrite,
                   log=lambda msg: err.print(msg, highlight=False))
    table = Table(title=f"{m['family']} → {out_dir}", show_header=False)
    for name, g in m["graphs"].items():
        p = m["parity"][name]
        how = g["exporter"] + (f" (fallback: {g['fallback_reason']})" if g.get("fallback_reason") else "")
        table.add_row(f"graph {name}", f"{g['precision']}{' ' + g['quantization'] if g['quantization'] else ''}, "
                      f"{how}, fp32 parity max |Δ| {p['max_abs_diff']:.2g}")
    table.add_row("size", f"{m['size_bytes'] / 1e6:.3f} MB" + (f" (fp32 {m['size_fp32_bytes'] / 1e6:.3f} MB)"
                                                               if "size_fp32_bytes" in m else ""))
    if "quality" in m:
        q = m["quality"]
        table.add_row(f"int8 {q['metric']}", f"{q['int8']:.4g} vs fp32 {q['fp32']:.4g} "
                      f"({100 * q['relative_change']:+.1f} %, bound +{100 * q['bound']:.0f} %)")
    out.print(table)


@app.command("bench-export")
def bench_export(run: Annotated[Path, typer.Argument(help="run folder")],
                 samples: Annotated[int, typer.Option(help="samples scored for quality (token models: validation "
                                                    "windows, at most 64)")] = 256,
                 calibrate: Annotated[int, typer.Option(help="calibration samples for static int8")] = 256,
                 repeats: Annotated[int, typer.Option(help="timed repeats per latency (the median is shown)")] = 3,
                 cold_start: Annotated[bool, typer.Option(help="also measure cold start and peak memory in fresh "
                                                          "processes")] = True,
                 json_out: Annotated[Path | None, typer.Option("--json", help="write the results here")] = None
                 ) -> None:
    """Size, latency (batch 1 and 64) and quality of the run in PyTorch fp32, ONNX fp32 and ONNX int8, plus cold
    start and peak memory of the torch-free runtime beside PyTorch."""
    _api()
    from genlab.export.bench import bench_export as run_bench

    res = run_bench(run, samples=samples, calibrate=calibrate, repeats=repeats, cold_start=cold_start,
                    log=lambda msg: err.print(msg, highlight=False))
    table = Table(title=f"{res['family']} on {res['data']}: {res['unit']}")
    cols = ["variant", "size (MB)", "latency b=1", "latency b=64", *res["quality_columns"]]
    for c in cols:
        table.add_column(c, justify="left" if c == "variant" else "right")
    for v in res["rows"]:
        table.add_row(v["variant"], f"{v['size_bytes'] / 1e6:.3f}", f"{1e3 * v['latency_b1_s']:.3g} ms",
                      f"{1e3 * v['latency_b64_s']:.3g} ms",
                      *[("–" if v.get(k) is None else f"{v[k]:.4g}") for k in res["quality_columns"]])
    out.print(table)
    if res.get("cold_start"):
        cs = Table(title="cold start (process start → first sample) and peak memory")
        for c in ("runtime", "cold start (s)", "peak RSS (MB)", "imports torch"):
            cs.add_column(c)
        for r in res["cold_start"]:
            cs.add_row(r["runtime"], f"{r['seconds']:.2f}", f"{r['peak_rss_mb']:.0f}", str(r["imports_torch"]))
        out.print(cs)
    for note in res.get("notes", []):
        err.print(note, highlight=False)
    if json_out is not None:
        from genlab.export.folder import write_json

        write_json(json_out, res)
        out.print(f"wrote {json_out}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning :class:`GenlabError` into one line and exit code 2."""
    try:
        app(args=argv, standalone_mode=True)
    except GenlabError as e:
        from rich.markup import escape

        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
