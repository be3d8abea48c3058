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
          config: Annotated[Path | None, typer.Option(help="TOML/YAML file of options")] = None) -> None:
    """Train a model and write a run folder (config.json, model.safetensors, metrics.jsonl, samples.png)."""
    api = _api()
    api.MODELS[family]  # unknown family → one-line error before anything else
    options = _options(family, list(ctx.args), data)
    if config is not None and not config.is_file():
        raise ConfigError(f"config file {config} does not exist")
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
           seed: Annotated[int, typer.Option(help="random seed")] = 0) -> None:
    """Draw samples from a trained run into a file in its data's format (or print text as it is generated)."""
    api = _api()
    from genlab.config import parse_cli_args, split_overrides

    if n is not None and n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    if out_path is not None and not out_path.parent.exists():
        raise ConfigError(f"folder {out_path.parent} does not exist; create it or choose another --out")
    loaded = api.load(run)
    mod = loaded.modality
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
            table.add_row(name, "/".join(kinds), lik, "yes" if caps["latent_space"] else "no", doc)
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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning :class:`GenlabError` into one line and exit code 2."""
    try:
        app(args=argv, standalone_mode=True)
    except GenlabError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
