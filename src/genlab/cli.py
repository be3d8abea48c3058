"""The ``genlab`` command: a thin typer + rich layer over :mod:`genlab.api`.

Every error a user can cause prints one line (``error: …``) to stderr and exits with code 2.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import typing
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


def _options(family: str, args: list[str]) -> dict[str, Any]:
    from genlab.api import option_classes
    from genlab.config import parse_cli_args

    return parse_cli_args(args, option_classes(family))


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
    options = _options(family, list(ctx.args))
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
    if not out_path.parent.exists():
        raise ConfigError(f"folder {out_path.parent} does not exist; create it or choose another --out")
    model = api.load(run)
    from genlab.config import parse_cli_args

    cls = type(model).sample_options_cls
    options = parse_cli_args(list(ctx.args), [cls] if cls is not None else [])
    x = api.sample(model, n, label=label, seed=seed, **options)
    if fmt == "png":
        from genlab.report.grids import save_grid

        save_grid(x, out_path, nrow)
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
          batch_size: Annotated[int, typer.Option(help="examples per forward pass")] = 100) -> None:
    """Test-set NLL and bits/dim where the family has a likelihood; writes eval.json in the run folder.

    Model options for evaluation may follow, e.g. `--iwae-k 1000` for the VAE's importance samples.
    """
    api = _api()
    from genlab.checkpoint import read_run_config
    from genlab.config import parse_cli_args

    cfg = read_run_config(run)
    options = parse_cli_args(list(ctx.args), [api.MODELS[cfg["family"]].config_cls])
    res = api.evaluate(run, max_examples=max_examples, batch_size=batch_size, **options)
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
