"""The Python API: every CLI command is one call here (``train``, ``load``, ``sample``, ``evaluate``, ``inpaint``, …).

Nothing here knows a kind of data: a run's modality (:mod:`genlab.modalities`) loads its data, writes and renders
its samples and evaluates it; a family's capability flags say what it can do.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab import checkpoint as ckpt
from genlab.config import build, read_config_file, split_overrides, to_json
from genlab.core import DATASETS, MODELS, DataSpec, GenerativeModel
from genlab.errors import CapabilityError, CheckpointError, ConfigError
from genlab.modalities.base import (
    MODALITIES,
    Evaluation,
    Modality,
    Progress,
    Splits,
    modality,
    no_progress,
    resolve_kind,
)
from genlab.run import Run
from genlab.trainer import Callback, TrainConfig, Trainer, resolve_device, seed_everything

try:
    from importlib.metadata import version as _version

    __version__ = _version("genlab")
except Exception:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["DATASETS", "MODALITIES", "MODELS", "Run", "create", "evaluate", "inpaint", "load", "modality",
           "resolve_kind", "sample", "train"]


@dataclass
class Setup:
    """A family's resolved configs and loaded data, ready to build and train."""

    family: str
    model_cfg: Any
    train_cfg: TrainConfig
    data_cfg: Any
    modality: Modality
    splits: Splits


def option_classes(family: str, data: str | None = None) -> tuple[type, type, type]:
    """The (train, data, model) config classes whose fields are ``genlab train FAMILY --data DATA`` options.

    The data config is that of the modality serving ``data`` for this family
    (:func:`genlab.modalities.resolve_kind`).
    """
    cls = MODELS[family]
    return TrainConfig, modality(resolve_kind(data, cls.data_forms)).config_cls, cls.config_cls



def pick_form(cls: type[GenerativeModel], mod: Modality) -> str:
    """The data form a family trains on with a modality: the first of the family's ``data_forms`` (its order of
    preference) that the modality produces, e.g. a VAE models ``penguins`` as a table and chorales as grids but
    molecules as tokens."""
    return next(f for f in cls.data_forms if f in mod.forms)

def prepare(family: str, options: Mapping[str, Any] | None = None, config_file: str | Path | None = None,
            base: Mapping[str, Any] | None = None) -> Setup:
    """Resolve options (file, then explicit values, over the family's defaults) and load the data.

    Arguments:
        family: registered family name.
        options: flat ``field → value`` overrides (strings are coerced to the field types).
        config_file: optional TOML/YAML file of options.
        base: a saved run's ``config.json`` to start from (``--resume``).
    """
    cls = MODELS[family]
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    values.update(options or {})
    if base is None:
        values = cls.resolve_options(values)
    data = values.get("data", base["data"].get("data") if base is not None else None)
    kind = base["spec"]["kind"] if base is not None else resolve_kind(None if data is None else str(data),
                                                                       cls.data_forms)
    mod = modality(kind)
    train_cls, data_cls, model_cls = TrainConfig, mod.config_cls, cls.config_cls
    t_vals, d_vals, m_vals = split_overrides(values, (train_cls, data_cls, model_cls))
    train_cfg: Any
    data_cfg: Any
    model_cfg: Any
    if base is not None:
        changed = [k for k, v in {**d_vals, **m_vals}.items()
                   if to_json(build(data_cls, {k: v}) if k in d_vals else build(model_cls, {k: v}))[k]
                   != {**base["data"], **base["model"]}.get(k)]
        if changed:
            raise ConfigError(f"--{changed[0].replace('_', '-')} cannot change when resuming; only trainer "
                              "options (e.g. --max-steps, --budget) can")
        train_cfg = build(train_cls, t_vals, base=build(train_cls, base["train"]))
        data_cfg, model_cfg = build(data_cls, base["data"]), build(model_cls, {**cls.legacy_options, **base["model"]})
    else:
        train_cfg = build(train_cls, {**cls.train_defaults, **t_vals})
        data_cfg, model_cfg = build(data_cls, d_vals), build(model_cls, m_vals)
    splits = mod.load(data_cfg, pick_form(cls, mod))
    if getattr(model_cfg, "conditional", False) and splits.train.spec.num_classes == 0 and "conditional" in m_vals:
        raise ConfigError(f"--conditional needs labelled data, and {data_cfg.data} has no labels")
    return Setup(family, model_cfg, train_cfg, data_cfg, mod, splits)


def create(family: str, spec: DataSpec, **options: Any) -> GenerativeModel:
    """Build an untrained model of ``family`` for data described by ``spec`` (``options``: model config fields)."""
    cls = MODELS[family]
    return cls(build(cls.config_cls, options), spec)


def _run_config(s: Setup) -> dict[str, Any]:
    return {"format_version": ckpt.FORMAT_VERSION, "genlab_version": __version__, "family": s.family,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": to_json(s.model_cfg), "train": to_json(s.train_cfg), "data": to_json(s.data_cfg),
            "spec": s.splits.train.spec.to_json(), "preprocessing": s.splits.preprocessing}


def default_out(family: str, data: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{family}-{Path(data).stem}-{stamp}"


def train(family: str, data: str | None = None, *, out: str | Path | None = None, resume: bool = False,
          overwrite: bool = False, config_file: str | Path | None = None,
          callbacks: list[Callback] | tuple[Callback, ...] = (), **options: Any) -> Run:
    """Train ``family`` on ``data`` and write a run folder.

    Arguments:
        family: registered family name (``genlab.MODELS``).
        data: built-in dataset name, folder or file (default: the modality's default).
        out: run folder (default ``runs/<family>-<data>-<timestamp>``); with ``resume`` the run to continue.
        resume: continue the run in ``out`` exactly where its last checkpoint left off.
        overwrite: replace an existing run folder at ``out``.
        config_file: TOML/YAML file of options.
        callbacks: per-step callbacks passed to the :class:`Trainer`.
        **options: any field of the trainer, data or family config, e.g. ``lr=1e-3, budget="2m"``.

    Returns:
        the :class:`Run` (sampling weights, config, modality, artifacts) with the training summary.

    Raises:
        GenlabError: on bad options, data or run folders (nothing is written), or when training diverges.
    """
    base = None
    if resume:
        if out is None:
            raise ConfigError("--resume needs --out RUN, the run folder to continue")
        base = ckpt.read_run_config(out)
        if base["family"] != family:
            raise ConfigError(f"{out} is a {base['family']} run, not {family}")
        if data is not None and data != base["data"]["data"]:
            raise ConfigError(f"{out} was trained on {base['data']['data']}; drop --data to resume it")
    elif data is not None:
        options = {**options, "data": data}
    setup = prepare(family, options, config_file, base)
    run_dir = Path(out) if out is not None else default_out(family, setup.data_cfg.data)
    if not resume and run_dir.exists():
        if not overwrite:
            raise ConfigError(f"run folder {run_dir} already exists; use --resume to continue it, --overwrite "
                              "to replace it, or another --out")
        if not (run_dir / ckpt.CONFIG).is_file() and any(run_dir.iterdir()):
            raise ConfigError(f"{run_dir} is not a genlab run folder; refusing to overwrite it")
        shutil.rmtree(run_dir)
    seed_everything(setup.train_cfg.seed)
    model = MODELS[family](setup.model_cfg, setup.splits.train.spec)
    artifacts = setup.modality.open_artifacts(setup.splits.files)
    model.attach(artifacts)
    if getattr(setup.model_cfg, "init_from", None) and not resume:
        model.start_from(setup.model_cfg.init_from)
    trainer = Trainer(model, model.training_data(setup.splits.train), setup.train_cfg, run_dir, setup.splits.test,
                      callbacks)
    run_config = _run_config(setup)
    if trainer.dist.main and not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_json(run_dir / ckpt.CONFIG, run_config)
        for name, blob in setup.splits.files.items():  # e.g. the vocabulary of a text run
            ckpt.write_bytes(run_dir / name, blob)
    elif trainer.dist.main:
        run_config = {**ckpt.read_run_config(run_dir), "train": to_json(setup.train_cfg)}
        ckpt.write_json(run_dir / ckpt.CONFIG, run_config)
    summary = trainer.fit(resume=resume)
    final = trainer.sampling_model()
    final.attach(artifacts)
    run = Run(run_dir, run_config, final, setup.modality, artifacts, summary)
    if trainer.dist.main:
        n = setup.train_cfg.n_samples
        k = final.spec.num_classes
        labels = torch.arange(n) % k if final.conditional and n >= k else None
        x = sample(run, n, label=labels, seed=setup.train_cfg.seed)
        path = run_dir / f"samples.{setup.modality.sample_formats[0]}"
        setup.modality.write_samples(run, x, path, setup.modality.sample_formats[0], labels)
    summary["run"] = str(run_dir)
    if trainer.dist.world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return run


def load(run: str | Path, *, ema: bool = True, device: str = "auto") -> Run:
    """Load a trained run from its folder (never unpickles).

    Arguments:
        run: the run folder ``genlab train`` wrote.
        ema: use the EMA weights when the run kept them (the weights in ``model.safetensors``); False loads the
            raw weights from ``train_state.safetensors``.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.

    Returns:
        the :class:`Run`: its model (in eval mode), config, modality and artifacts.

    Raises:
        CheckpointError: for a missing/corrupt run, an unknown family or modality, or a newer format version.
    """
    path = Path(run)
    cfg = ckpt.read_run_config(path)
    cls = MODELS[cfg["family"]]
    model_cfg: Any
    try:
        mod = modality(cfg["spec"]["kind"])
        model_cfg = build(cls.config_cls, {**cls.legacy_options, **cfg["model"]})
        spec = DataSpec.from_json({**mod.spec_defaults, **cfg["spec"]}, default_form=mod.forms[0])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}/config.json does not describe a valid {cfg['family']} model ({e})") from None
    files = {name: (path / name).read_bytes() for name in mod.artifact_files if (path / name).is_file()}
    artifacts = mod.open_artifacts(files)
    model = cls(model_cfg, spec)
    if ema:
        state, _ = ckpt.read_tensors(path / ckpt.WEIGHTS)
    else:
        tensors, _ = ckpt.read_tensors(path / ckpt.STATE)
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {path} do not fit its config ({str(e).splitlines()[0]})") from None
    model.attach(artifacts)
    model = model.to(resolve_device(device)).eval()
    return Run(path, cfg, model, mod, artifacts)


def as_run(source: Run | GenerativeModel | str | Path) -> Run:
    """A :class:`Run` from a run, a run folder, or a bare model (which then has no folder and no artifacts)."""
    if isinstance(source, Run):
        return source
    if isinstance(source, GenerativeModel):
        return Run(None, {}, source, modality(source.spec.kind))
    return load(source)


def sample_options(model: GenerativeModel, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate sampling-time options against the family's ``sample_options_cls`` (defaults filled in)."""
    cls = type(model).sample_options_cls
    if cls is None:
        if options:
            raise ConfigError(f"family '{model.family}' takes no sampling option --{next(iter(options))}")
        return {}
    return dataclasses.asdict(build(cls, options or {}))


def sample(source: Run | GenerativeModel | str | Path, n: int, *, label: int | Tensor | None = None,
           seed: int = 0, condition: str | None = None, **options: Any) -> Tensor:
    """Draw ``n`` samples in the data representation (``uint8`` images, token ids, …) with a seeded generator.

    Arguments:
        source: a run, a run folder or a model.
        n: number of samples.
        label: class label (one for all, or one per sample) for a conditional model.
        seed: seed of the sampling generator.
        condition: values the samples must have, as the run's modality writes them (``cut=Ideal`` for a table,
            ``qed=0.9`` for molecules); modalities with the ``condition`` capability.
        **options: the family's sampling options (``genlab models FAMILY`` lists them).

    Returns:
        the samples, on the CPU.

    Raises:
        ConfigError: for ``n < 1`` or a label out of range; CapabilityError for a label on an unconditional model.
    """
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    run = as_run(source)
    model = run.model
    opts = sample_options(model, options)
    cond = None if label is None else torch.as_tensor(label, dtype=torch.long)
    if condition is not None:
        if "condition" not in run.modality.capabilities:
            raise CapabilityError(f"{run.modality.kind} data takes no --condition")
        with torch.no_grad():
            return run.modality.sample_condition(run, n, condition, seed=seed, label=cond, options=opts).cpu()
    g = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        return run.modality.draw(run, n, cond, g, opts).cpu()


def output_options(run: Run, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate sample-file options against the modality's ``output_options_cls``."""
    cls = run.modality.output_options_cls
    if cls is None:
        if options:
            raise ConfigError(f"{run.modality.kind} samples take no option --{next(iter(options))}")
        return {}
    return dataclasses.asdict(build(cls, options or {}))


def save_samples(source: Run | str | Path, samples: Tensor, path: str | Path, *, fmt: str | None = None,
                 labels: Tensor | int | None = None, **options: Any) -> Path:
    """Write samples in the run's modality's format (``fmt``, else the path's suffix, else its default).

    Arguments:
        source: the run the samples came from.
        samples: as :func:`sample` returned them.
        path: output file (its folder must exist).
        fmt: file format, one of the modality's ``sample_formats``.
        labels: the labels the samples were drawn for, if any.
        **options: the modality's sample-file options (e.g. ``nrow`` for image grids).

    Raises:
        ConfigError: for a format the modality cannot write, a missing folder or a bad option.
    """
    run = as_run(source)
    path = Path(path)
    if not path.parent.exists():
        raise ConfigError(f"folder {path.parent} does not exist; create it or choose another --out")
    chosen = run.modality.sample_format(path, fmt)
    lab = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
    return run.modality.write_samples(run, samples, path, chosen, lab, output_options(run, options))


def sample_text(source: Run | str | Path, n: int, *, label: int | None = None, seed: int = 0,
                **options: Any) -> Iterator[str]:
    """Samples as text for a terminal, in pieces: one sample streams as it is generated when the modality and
    the family can stream; otherwise the ``n`` samples come as one piece.

    Raises:
        CapabilityError: for a modality whose samples are not text.
    """
    run = as_run(source)
    if not run.modality.prints_samples:
        raise CapabilityError(f"{run.modality.kind} samples are files; give --out")
    if n == 1 and label is None and "stream" in run.modality.capabilities and run.model.streaming:
        yield from run.modality.stream(run, seed=seed, options=sample_options(run.model, options))
        return
    yield run.modality.show(run, sample(run, n, label=label, seed=seed, **options))


def load_splits(source: Run | str | Path) -> Splits:
    """The splits a run was trained and tested on, re-loaded from its config (with the run's own artifacts)."""
    run = as_run(source)
    mod = run.modality
    return mod.load(mod.data_config(run.config, run.path), run.spec.form)


def test_split(source: Run | str | Path) -> Any:
    """The held-out split a run was trained against."""
    return load_splits(source).test


def eval_option_classes(run: str | Path) -> tuple[type, type]:
    """The (modality evaluation options, family config) classes whose fields ``genlab eval RUN`` takes."""
    cfg = ckpt.read_run_config(run)
    return modality(cfg["spec"]["kind"]).eval_options_cls, MODELS[cfg["family"]].config_cls


def evaluate_run(source: Run | str | Path, *, max_examples: int | None = None, batch_size: int = 100,
                 seed: int = 0, splits: Splits | None = None, progress: Progress | None = None,
                 **options: Any) -> Evaluation:
    """Evaluate a run: held-out likelihood and its modality's sample-based metrics (see :func:`evaluate`).

    Returns:
        the :class:`~genlab.modalities.Evaluation`: the report and the samples it drew.
    """
    run = as_run(source)
    eval_cls, model_cls = run.modality.eval_options_cls, type(run.model).config_cls
    e_vals, m_vals = split_overrides(options, (eval_cls, model_cls))
    if m_vals:
        run.model.config = build(model_cls, m_vals, base=run.model.config)
    opts: Any = build(eval_cls, e_vals)
    splits = splits or load_splits(run)
    ev = run.modality.evaluate(run, splits, opts, batch_size=batch_size, max_examples=max_examples, seed=seed,
                               progress=progress or no_progress)
    ev.report = {"family": run.family, "data": run.data, "split": "test", **ev.report}
    if run.model.classifies and splits.test.y is not None:  # a family whose product is a classifier (ssvae)
        from genlab.metrics.classification import classifier_report

        test = splits.test if max_examples is None else splits.test.head(max_examples)
        ev.report["classifier"] = classifier_report(run.model, test, batch_size)
    if m_vals:
        ev.report["model_options"] = {k: getattr(run.model.config, k) for k in m_vals}
    return ev


def evaluate(source: Run | str | Path, *, max_examples: int | None = None, batch_size: int = 100,
             write: bool = True, seed: int = 0, progress: Progress | None = None, **options: Any) -> dict[str, Any]:
    """Test-set likelihood of a run (NLL in nats and bits/dim, labelled exact, bound or none) plus the metrics of
    its modality (images: FID/KID/precision-recall/IS/…; text: perplexity, bits/char, continuations); writes
    ``eval.json`` into the run folder.

    Arguments:
        source: a run or run folder.
        max_examples: evaluate the likelihood on the first N test examples only.
        batch_size: examples per forward pass.
        write: write ``eval.json`` into the run folder.
        seed: sampling seed of the sample-based metrics.
        progress: ``fn(stage, done, total)`` called as the evaluation proceeds.
        **options: the modality's evaluation options (``samples=1000``, ``features=["classifier"]``,
            ``continuations=32``, …) and evaluation-time model settings (``iwae_k=1000`` for the VAE).

    Raises:
        ConfigError: for an unknown or bad option.
    """
    run = as_run(source)
    ev = evaluate_run(run, max_examples=max_examples, batch_size=batch_size, seed=seed, progress=progress,
                      **options)
    if write and run.path is not None:
        ckpt.write_json(run.path / "eval.json", ev.report)
    return ev.report


def capabilities(family: str) -> dict[str, Any]:
    """What a family offers: its likelihood per form, latent space, inpainting, streaming."""
    cls = MODELS[family]
    return {"likelihood": {form: cls.likelihood_for(form) for form in cls.data_forms},
            "latent_space": cls.latent_space, "inpainting": cls.inpainting, "streaming": cls.streaming}


def inpaint(source: Run | GenerativeModel | str | Path, images: Tensor, mask: Tensor, *,
            label: int | Tensor | None = None, seed: int = 0, **options: Any) -> Tensor:
    """Fill the masked part of given data with a family that can inpaint (diffusion: RePaint).

    Arguments:
        source: a run, run folder or model.
        images: data of the model's shape, e.g. ``uint8`` images ``(N, C, H, W)`` or one image ``(C, H, W)``.
        mask: boolean, True where to fill: for images ``(H, W)``, ``(N, 1, H, W)`` or like ``images``.
        label: class label (one, or one per example) for a conditional model; None uses the unconditional model.
        seed: seed of the sampling generator.
        **options: the family's sampling options (sampler, steps, resample, …).

    Returns:
        the filled data, equal to ``images`` outside the mask.

    Raises:
        CapabilityError: for a family or modality that cannot inpaint; ConfigError/DataError for data or masks
            that do not fit the model.

    References:
        Lugmayr et al., "RePaint", 2022, arXiv:2201.09865.
    """
    run = as_run(source)
    model = run.model
    if not model.inpainting:
        able = ", ".join(n for n, c in MODELS.items() if c.inpainting)
        raise CapabilityError(f"family '{model.family}' cannot inpaint; use a {able} run")
    if "inpaint" not in run.modality.capabilities:
        raise CapabilityError(f"{run.modality.kind} data cannot be inpainted")
    opts = sample_options(model, options)
    x, m = run.modality.check_inpaint(run, images, mask)
    g = torch.Generator(device=model.device).manual_seed(seed)
    cond = None if label is None else torch.as_tensor(label, dtype=torch.long)
    with torch.no_grad():
        return model.inpaint(x.to(model.device), (~m).to(model.device), cond, generator=g, **opts).cpu()


def inpaint_files(source: Run | str | Path, inputs: str | Path, out: str | Path, *, box: str | None = None,
                  mask: str | Path | None = None, label: int | None = None, seed: int = 0,
                  **options: Any) -> tuple[Path, int]:
    """``genlab inpaint``: read data and a mask from files, fill it (:func:`inpaint`), write the result.

    Returns:
        (the output path, how many examples were filled).
    """
    run = as_run(source)
    out = Path(out)
    if not out.parent.exists():
        raise ConfigError(f"folder {out.parent} does not exist; create it or choose another --out")
    run.modality.sample_format(out, out.suffix.lower().lstrip(".") or None)  # an unwritable --out stops here
    if not run.model.inpainting:
        raise CapabilityError(f"family '{run.family}' cannot inpaint; use a "
                              f"{', '.join(n for n, c in MODELS.items() if c.inpainting)} run")
    x, m = run.modality.read_inpaint_inputs(run, Path(inputs), box, None if mask is None else Path(mask))
    filled = inpaint(run, x, m, label=label, seed=seed, **options)
    xs, ms = run.modality.check_inpaint(run, x, m)
    return run.modality.write_inpainted(run, xs, ms, filled, out), len(xs)
