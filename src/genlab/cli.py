"""The ``genlab`` command: a thin typer + rich layer over :mod:`genlab.api`.

Every error a user can cause prints one line (``error: …``) to stderr and exits with code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from genlab.errors import ConfigError, GenlabError, TrainingDiverged

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, sample and evaluate generative models: vae, gan, … on images and more.")
out = Console()
err = Console(stderr=True)

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _api() -> Any:
    import genlab

    return genlab


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


def _sample_text(model: Any, n: int, seed: int, options: dict[str, Any]) -> None:
    """Print ``n`` text samples; a single one is streamed token by token as it is generated."""
    import torch

    from genlab.api import sample_options

    opts = sample_options(model, options)
    g = torch.Generator(device=model.device).manual_seed(seed)
    if n > 1:
        x = model.sample(n, generator=g, **opts)
        for i, text in enumerate(model.decode(x, opts["stop"])):
            out.print(f"[bold]--- sample {i} ---[/]", highlight=False)
            out.print(text, markup=False, highlight=False)
        return
    tok, ids, shown = model.tokenizer, [], ""
    tok.encode(opts["prompt"], strict=True)  # a bad prompt fails before anything is printed
    sys.stdout.write(opts["prompt"])
    for t in model.stream(1, generator=g, **opts):
        ids.append(int(t[0]))
        text = tok.decode(ids)
        cut = min((text.find(s) for s in opts["stop"] if s in text), default=-1)
        if cut >= 0:
            sys.stdout.write(text[len(shown) : cut])
            break
        if not text.endswith("\ufffd"):  # wait for the rest of a split UTF-8 character
            sys.stdout.write(text[len(shown) :])
            sys.stdout.flush()
            shown = text
    sys.stdout.write("\n")


def _load_for_sampling(run: Path, args: list[str], out_path: Path) -> tuple[Any, dict[str, Any]]:
    """Check the output folder, load the run and parse its family's sampling options from ``args``."""
    from genlab.config import parse_cli_args

    if not out_path.parent.exists():
        raise ConfigError(f"folder {out_path.parent} does not exist; create it or choose another --out")
    model = _api().load(run)
    cls = type(model).sample_options_cls
    return model, parse_cli_args(args, [cls] if cls is not None else [])


@app.command(context_settings=EXTRA, epilog="Families with sampling options (e.g. a diffusion sampler) take them "
             "as --field-name value too: `genlab models FAMILY` lists them.")
def sample(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder")],
           n: Annotated[int, typer.Option("-n", "--n", help="number of samples")] = 64,
           out_path: Annotated[Path, typer.Option("--out", help="output file")] = Path("samples.png"),
           fmt: Annotated[str, typer.Option("--format", help="png (a grid) or npz (arrays x, y)")] = "png",
           label: Annotated[int | None, typer.Option(help="class label for a conditional model")] = None,
           seed: Annotated[int, typer.Option(help="random seed")] = 0,
           nrow: Annotated[int | None, typer.Option(help="images per grid row")] = None) -> None:
    """Draw samples from a trained run into a PNG grid or an .npz of arrays."""
    api = _api()
    if fmt not in ("png", "npz"):
        raise ConfigError(f"--format must be png or npz, got {fmt!r}")
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    model, options = _load_for_sampling(run, list(ctx.args), out_path)
    if model.spec.kind == "text":  # token models print (and stream) text instead of writing a grid
        source = ctx.get_parameter_source("n")
        _sample_text(model, 1 if source is not None and source.name == "DEFAULT" else n, seed, options)
        return
    x = api.sample(model, n, label=label, seed=seed, **options)
    if fmt == "png":
        from genlab.report.grids import save_samples

        save_samples(x, out_path, nrow)
    else:
        from genlab.checkpoint import write_bytes

        buf = io.BytesIO()
        arrays = {"x": x.numpy()}
        if label is not None:
            arrays["y"] = np.full(n, label, dtype=np.int64)
        np.savez(buf, **arrays)
        write_bytes(out_path, buf.getvalue())
    out.print(f"wrote {n} samples to {out_path}")


@app.command("eval", context_settings=EXTRA)
def eval_(ctx: typer.Context, run: Annotated[Path, typer.Argument(help="run folder")],
          max_examples: Annotated[int | None, typer.Option(help="use only the first N test examples")] = None,
          batch_size: Annotated[int, typer.Option(help="examples per forward pass")] = 100,
          continuations: Annotated[int, typer.Option(help="text runs: score this many held-out prompt "
                                                     "continuations with BLEU/chrF/ROUGE")] = 0,
          samples: Annotated[int, typer.Option(help="image runs: samples for FID/KID/P-R/IS/… (0 = skip)")] = 1000,
          features: Annotated[str | None, typer.Option(help="feature networks, e.g. classifier,inception "
                                                       "(default: all that serve the data)")] = None) -> None:
    """Test-set NLL and bits/dim where the family has a likelihood; writes eval.json in the run folder.

    Image runs also get sample-based metrics (FID, KID, precision/recall, density/coverage, Inception Score,
    mode coverage, memorization) on --samples samples.

    Model options for evaluation may follow, e.g. `--iwae-k 1000` for the VAE's importance samples.
    """
    api = _api()
    from genlab.checkpoint import read_run_config
    from genlab.config import parse_cli_args

    cfg = read_run_config(run)
    options = parse_cli_args(list(ctx.args), [api.MODELS[cfg["family"]].config_cls])
    if continuations:
        options["continuations"] = continuations
    names = [f.strip() for f in features.split(",") if f.strip()] if features else None
    with progress_bar() as progress:
        res = api.evaluate(run, max_examples=max_examples, batch_size=batch_size, samples=samples, features=names,
                           progress=progress, **options)
    table = Table(title=f"{res['family']} on {res['data']} ({res['split']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if res["likelihood"] == "none":
        table.add_row("likelihood", "no likelihood (" + res["note"] + ")")
    else:
        kind = "exact" if res["likelihood"] == "exact" else "upper bound on NLL"
        table.add_row("NLL (nats/example)", f"{res['nll_nats']:.2f} ± {res['nll_nats_sem']:.2f}")
        table.add_row("bits/dim", f"{res['bits_per_dim']:.4f} ({kind})")
        table.add_row("examples", str(res["n_examples"]))
    text_rows = [("val loss (nats/token)", "loss"), ("perplexity", "perplexity"),
                 ("bits/char", "bits_per_char"), ("bits/byte", "bits_per_byte"), ("BLEU", "bleu"),
                 ("chrF", "chrf"), ("ROUGE-1", "rouge1"), ("ROUGE-2", "rouge2"), ("ROUGE-L", "rougeL")]
    for name, key in text_rows:
        if key in res:
            table.add_row(name, f"{res[key]:.4f}")
    if "images" in res:
        image_rows(table, res["images"])
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
            lik = "exact" if caps["exact_likelihood"] else "bound" if caps["likelihood_bound"] else "none"
            if cls.likelihood_by_kind:
                lik = ", ".join(f"{kind}: {how}" for kind, how in cls.likelihood_by_kind.items())
            doc = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
            table.add_row(name, "/".join(cls.data_kinds), lik, "yes" if caps["latent_space"] else "no", doc)
        out.print(table)
        return
    api.MODELS[family]
    sample_cls = api.MODELS[family].sample_options_cls
    for cls in [*option_classes(family), *([sample_cls] if sample_cls is not None else [])]:
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
                                                            "model.safetensors [+ tokenizer.json])")],
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
    table.add_column("name")
    table.add_column("about")
    for name, fn in api.DATASETS.items():
        table.add_row(name, (fn.__doc__ or "").strip().splitlines()[0])
    out.print(table)


def _inpaint_images(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """``uint8`` images ``(N, C, H, W)`` from an .npz (array ``x``) or a PNG/JPEG, checked against ``shape``."""
    from genlab.errors import DataError

    if not path.is_file():
        raise DataError(f"--images file {path} does not exist")
    c, h, w = shape
    if path.suffix.lower() == ".npz":
        from genlab.data.images import load_npz

        x = load_npz(path).x
    else:
        from genlab.data.images import _read_image

        im = _read_image(path).convert("L" if c == 1 else "RGB")
        arr = np.asarray(im, dtype=np.uint8)
        x = arr[None, None] if arr.ndim == 2 else arr.transpose(2, 0, 1)[None]
    if tuple(x.shape[1:]) != (c, h, w):
        raise DataError(f"{path.name} holds images of shape {tuple(x.shape[1:])} but the model makes {(c, h, w)}")
    return x


def _inpaint_mask(box: str | None, mask: Path | None, h: int, w: int) -> np.ndarray:
    """Boolean ``(H, W)`` mask, True where to fill, from ``x0,y0,x1,y1`` (pixels, end exclusive) or a PNG."""
    if (box is None) == (mask is None):
        raise ConfigError("give exactly one of --box x0,y0,x1,y1 or --mask MASK.png")
    if mask is not None:
        from genlab.data.images import _read_image

        if not mask.is_file():
            raise ConfigError(f"--mask file {mask} does not exist")
        m = np.asarray(_read_image(mask).convert("L"), dtype=np.uint8) >= 128
        if m.shape != (h, w):
            raise ConfigError(f"--mask is {m.shape[1]}x{m.shape[0]} but the images are {w}x{h}")
        return m
    try:
        x0, y0, x1, y1 = (int(v) for v in str(box).split(","))
    except ValueError:
        raise ConfigError(f"bad --box {box!r}; write x0,y0,x1,y1 in pixels, e.g. 0,0,14,28") from None
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ConfigError(f"--box {box} must satisfy 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}")
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


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
    if out_path.suffix.lower() not in (".png", ".npz"):
        raise ConfigError(f"--out must end in .png or .npz, got {out_path.name}")
    model, options = _load_for_sampling(run, list(ctx.args), out_path)
    shape = tuple(model.spec.shape)
    x = _inpaint_images(images, shape)
    m = _inpaint_mask(box, mask, shape[-2], shape[-1])
    import torch

    from genlab.api import inpaint as api_inpaint

    result = api_inpaint(model, torch.from_numpy(x), torch.from_numpy(m), label=label, seed=seed, **options)
    if out_path.suffix.lower() == ".png":
        from genlab.report.grids import save_grid

        shown = torch.from_numpy(x).clone()
        shown[:, :, torch.from_numpy(m)] = 128  # the hole, in gray
        save_grid(torch.cat([shown, result]), out_path, nrow=len(x))
    else:
        from genlab.checkpoint import write_bytes

        buf = io.BytesIO()
        np.savez(buf, x=result.numpy())
        write_bytes(out_path, buf.getvalue())
    out.print(f"wrote {len(x)} inpainted images to {out_path}")


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


def image_rows(table: Table, res: dict[str, Any]) -> None:
    """Table rows of the sample-based image metrics (see :func:`genlab.metrics.images.sample_metrics`)."""
    table.add_row("samples", f"{res['n_samples']} ({res['samples_per_s']:.1f}/s) vs {res['reference']}")
    for name in ("classifier", "inception"):
        if name in res:
            m = res[name]
            table.add_row(f"FID ({name})", f"{m['fid']:.3f}")
            table.add_row(f"KID ({name})", f"{m['kid']:.5f} ± {m['kid_std']:.5f}")
            table.add_row(f"precision / recall ({name})", f"{m['precision']:.3f} / {m['recall']:.3f}")
            table.add_row(f"density / coverage ({name})", f"{m['density']:.3f} / {m['coverage']:.3f}")
    if "classes" in res:
        c = res["classes"]
        table.add_row("Inception Score (classifier)", f"{c['inception_score']:.3f} ± {c['inception_score_std']:.3f} "
                      f"(test data {c['inception_score_test']:.3f})")
        table.add_row("classes hit", f"{c['classes_hit']}/{c['num_classes']} (entropy {c['entropy_normalized']:.3f}"
                      " of max)")
        if "class_accuracy" in c:
            table.add_row("class accuracy of samples", f"{c['class_accuracy']:.3f} (classifier on test data "
                          f"{c['classifier_test_accuracy']:.3f})")
    mem = res["memorization"]
    table.add_row("nearest train / test distance", f"{mem['nn_train_mean']:.3f} / {mem['nn_test_mean']:.3f}")
    table.add_row("near-copies of training images", f"{100 * mem['near_copy_share']:.1f}%")
    for name, note in res.get("notes", {}).items():
        table.add_row(f"{name} features", f"skipped: {note}")


@app.command()
def compare(data: Annotated[str, typer.Option(help="built-in dataset, image folder or .npz")] = "mnist",
            families: Annotated[str | None, typer.Option(help="comma-separated families to train "
                                                         "(default: every image family)")] = None,
            runs: Annotated[str | None, typer.Option(help="comma-separated existing run folders to compare")] = None,
            budget: Annotated[str, typer.Option(help="training wall-clock budget per family, e.g. 5m")] = "5m",
            seed: Annotated[int, typer.Option(help="seed of every training run and of sampling")] = 0,
            samples: Annotated[int, typer.Option(help="samples per model for the image metrics")] = 1000,
            features: Annotated[str | None, typer.Option(help="feature networks, e.g. classifier,inception "
                                                         "(default: all that serve the data)")] = None,
            out_dir: Annotated[Path, typer.Option("--out", help="folder for the runs, report.html and "
                                                  "results.json")] = Path("runs/compare"),
            retrain: Annotated[bool, typer.Option(help="retrain families whose run folder already exists")] = False,
            max_examples: Annotated[int | None, typer.Option(help="bits/dim on the first N test examples only")]
            = None) -> None:
    """Train families with the same budget, seed and split (or take existing runs), evaluate all with the same
    metrics and sample counts, and write report.html and results.json."""
    from genlab.compare import compare as run_compare

    fams = [f.strip() for f in families.split(",") if f.strip()] if families else None
    run_list = [Path(r.strip()) for r in runs.split(",") if r.strip()] if runs else []
    names = [f.strip() for f in features.split(",") if f.strip()] if features else None
    with progress_bar() as progress:
        res = run_compare(data, fams, runs=run_list, budget=budget, seed=seed, samples=samples, features=names,
                          out=out_dir, retrain=retrain, max_examples=max_examples, progress=progress,
                          log=lambda msg: err.print(msg, highlight=False))
    table = Table(title=f"compare on {res['data']} ({res['samples']} samples each)")
    cols = [("FID clf", "classifier/fid"), ("FID incep", "inception/fid"), ("KID clf", "classifier/kid"),
            ("prec", "classifier/precision"), ("rec", "classifier/recall"), ("cov", "classifier/coverage"),
            ("IS", "classes/inception_score"), ("bits/dim", "bits_per_dim"), ("samples/s", "samples_per_s")]
    table.add_column("run")
    for c, _ in cols:
        table.add_column(c, justify="right")
    for name, r in res["runs"].items():
        flat = r["flat"]
        table.add_row(name, *[f"{flat[k]:.4g}" if isinstance(flat.get(k), float) else "–" for _, k in cols])
    out.print(table)
    out.print(f"wrote {res['report']} and {res['results']}")


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
