"""The Python API: every CLI command is one call here (``create``, ``train``, ``load``, ``sample``, ``evaluate``)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab import checkpoint as ckpt
from genlab.config import build, read_config_file, split_overrides, to_json
from genlab.core import MODELS, DataSpec, GenerativeModel
from genlab.data import ArrayDataset, data_kind, modality
from genlab.errors import CheckpointError, ConfigError
from genlab.metrics.likelihood import likelihood_report
from genlab.report.grids import save_samples
from genlab.trainer import Callback, TrainConfig, Trainer, resolve_device, seed_everything

try:
    from importlib.metadata import version as _version

    __version__ = _version("genlab")
except Exception:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"


@dataclass
class Run:
    """What ``train`` produced: the run folder, the trained model (sampling weights) and a summary."""

    path: Path | None
    model: GenerativeModel
    summary: dict[str, Any]


@dataclass
class Setup:
    """A family's resolved configs and loaded data, ready to build and train."""

    family: str
    model_cfg: Any
    train_cfg: TrainConfig
    data_cfg: Any
    train: ArrayDataset
    test: ArrayDataset
    preprocessing: dict[str, Any]


def option_classes(family: str, data: str | None = None) -> tuple[type, type, type]:
    """The (train, data, model) config classes whose fields are ``genlab train FAMILY --data DATA`` options.

    The data config is that of the modality ``data`` belongs to (see :func:`genlab.data.data_kind`).
    """
    cls = MODELS[family]
    return TrainConfig, modality(data_kind(data, cls.data_kinds)).config_cls, cls.config_cls


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
    kind = data_kind(None if data is None else str(data), cls.data_kinds)
    train_cls, data_cls, model_cls = option_classes(family, None if data is None else str(data))
    t_vals, d_vals, m_vals = split_overrides(values, (train_cls, data_cls, model_cls))
    if base is not None:
        changed = [k for k, v in {**d_vals, **m_vals}.items()
                   if to_json(build(data_cls, {k: v}) if k in d_vals else build(model_cls, {k: v}))[k]
                   != {**base["data"], **base["model"]}.get(k)]
        if changed:
            raise ConfigError(f"--{changed[0].replace('_', '-')} cannot change when resuming; only trainer "
                              "options (e.g. --max-steps, --budget) can")
        train_cfg = build(train_cls, t_vals, base=build(train_cls, base["train"]))
        data_cfg, model_cfg = build(data_cls, base["data"]), build(model_cls, base["model"])
    else:
        train_cfg = build(train_cls, {**cls.train_defaults, **t_vals})
        data_cfg, model_cfg = build(data_cls, d_vals), build(model_cls, m_vals)
    train, test, prep = modality(kind).load(data_cfg)
    if getattr(model_cfg, "conditional", False) and train.spec.num_classes == 0 and "conditional" in m_vals:
        raise ConfigError(f"--conditional needs labelled data, and {data_cfg.data} has no labels")
    return Setup(family, model_cfg, train_cfg, data_cfg, train, test, prep)


def create(family: str, spec: DataSpec, **options: Any) -> GenerativeModel:
    """Build an untrained model of ``family`` for data described by ``spec`` (``options``: model config fields)."""
    cls = MODELS[family]
    return cls(build(cls.config_cls, options), spec)


def _run_config(s: Setup) -> dict[str, Any]:
    return {"format_version": ckpt.FORMAT_VERSION, "genlab_version": __version__, "family": s.family,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": to_json(s.model_cfg), "train": to_json(s.train_cfg), "data": to_json(s.data_cfg),
            "spec": s.train.spec.to_json(), "preprocessing": s.preprocessing}


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
    model = MODELS[family](setup.model_cfg, setup.train.spec)
    if getattr(setup.model_cfg, "init_from", None) and not resume:
        model.start_from(setup.model_cfg.init_from)
    trainer = Trainer(model, setup.train, setup.train_cfg, run_dir, setup.test, callbacks)
    if trainer.dist.main and not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_json(run_dir / ckpt.CONFIG, _run_config(setup))
        for name, blob in getattr(setup.train, "artifacts", {}).items():  # e.g. a text run's tokenizer.json
            ckpt.write_bytes(run_dir / name, blob)
    elif trainer.dist.main:
        cfg = ckpt.read_run_config(run_dir)
        cfg["train"] = to_json(setup.train_cfg)
        ckpt.write_json(run_dir / ckpt.CONFIG, cfg)
    summary = trainer.fit(resume=resume)
    final = trainer.sampling_model()
    final.run_dir = run_dir  # type: ignore[attr-defined]  (as load() sets it: run files such as a tokenizer)
    if trainer.dist.main:
        g = torch.Generator(device=final.device).manual_seed(setup.train_cfg.seed)
        n = setup.train_cfg.n_samples
        labels = None
        if final.conditional:
            k = final.spec.num_classes
            labels = torch.arange(n, device=final.device) % k if n >= k else None
        x = final.sample(n, labels, generator=g).cpu()
        tokenizer = getattr(setup.train, "tokenizer", None)
        if tokenizer is not None:  # token data: decoded text, one sample per block
            text = "\n\n".join(f"--- sample {i} ---\n{tokenizer.decode(row)}" for i, row in enumerate(x))
            ckpt.write_bytes(run_dir / "samples.txt", (text + "\n").encode("utf-8"))
        else:
            save_samples(x, run_dir / "samples.png", nrow=final.spec.num_classes if labels is not None else None)
    summary["run"] = str(run_dir)
    if trainer.dist.world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return Run(run_dir, final, summary)


def load(run: str | Path, *, ema: bool = True, device: str = "auto") -> GenerativeModel:
    """Load a trained model from a run folder (never unpickles).

    Arguments:
        run: the run folder ``genlab train`` wrote.
        ema: use the EMA weights when the run kept them (the weights in ``model.safetensors``); False loads the
            raw weights from ``train_state.safetensors``.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.

    Raises:
        CheckpointError: for a missing/corrupt run, an unknown family or a newer format version.
    """
    cfg = ckpt.read_run_config(run)
    cls = MODELS[cfg["family"]]
    try:
        model_cfg = build(cls.config_cls, cfg["model"])
        spec = DataSpec.from_json(cfg["spec"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{run}/config.json does not describe a valid {cfg['family']} model ({e})") from None
    model = cls(model_cfg, spec)
    if ema:
        state, _ = ckpt.read_tensors(Path(run) / ckpt.WEIGHTS)
    else:
        tensors, _ = ckpt.read_tensors(Path(run) / ckpt.STATE)
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {run} do not fit its config ({str(e).splitlines()[0]})") from None
    model.run_config = cfg  # type: ignore[attr-defined]
    model.run_dir = Path(run)  # type: ignore[attr-defined]
    return model.to(resolve_device(device)).eval()


def _model(model_or_run: GenerativeModel | str | Path) -> GenerativeModel:
    return model_or_run if isinstance(model_or_run, GenerativeModel) else load(model_or_run)


def sample_options(model: GenerativeModel, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate sampling-time options against the family's ``sample_options_cls`` (defaults filled in)."""
    cls = type(model).sample_options_cls
    if cls is None:
        if options:
            raise ConfigError(f"family '{model.family}' takes no sampling option --{next(iter(options))}")
        return {}
    return dataclasses.asdict(build(cls, options or {}))


def sample(model_or_run: GenerativeModel | str | Path, n: int, *, label: int | Tensor | None = None,
           seed: int = 0, **options: Any) -> Tensor:
    """Draw ``n`` samples (``uint8`` images for image data) with a seeded generator, on CPU.

    Arguments:
        model_or_run: a model or a run folder.
        n: number of samples.
        label: class label (one for all, or one per sample) for a conditional model.
        seed: seed of the sampling generator.
        **options: the family's sampling options (``genlab models FAMILY`` lists them).

    Raises:
        ConfigError: for ``n < 1`` or a label out of range; CapabilityError for a label on an unconditional model.
    """
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    model = _model(model_or_run)
    opts = sample_options(model, options)
    g = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        return model.sample(n, label, generator=g, **opts).cpu()


def test_split(run: str | Path) -> ArrayDataset:
    """The held-out split a run was trained against (re-loaded from the run's data config)."""
    cfg = ckpt.read_run_config(run)
    mod = modality(cfg["spec"]["kind"])
    data = dict(cfg["data"])
    if "tokenizer" in data and (Path(run) / "tokenizer.json").is_file():
        data["tokenizer"] = str(run)  # the run's own copy: a fine-tuned run must not need its base run any more
    _, test, _ = mod.load(build(mod.config_cls, data))
    return test


def evaluate(run: str | Path, *, max_examples: int | None = None, batch_size: int = 100,
             write: bool = True, continuations: int = 0, samples: int = 1000,
             features: list[str] | tuple[str, ...] | None = None, progress: Any = None,
             **model_options: Any) -> dict[str, Any]:
    """Test-set likelihood of a run (NLL in nats and bits/dim where the family has one); writes ``eval.json``.

    Text runs report loss, perplexity and bits per char/byte (:mod:`genlab.metrics.text`).

    Arguments:
        run: run folder.
        max_examples: evaluate on the first N test examples only.
        batch_size: examples per forward pass.
        write: write ``eval.json`` into the run folder.
        continuations: for text runs, also score this many greedy continuations of held-out prompts
            (BLEU, chrF, ROUGE-1/2/L against the held-out text).
        samples: for image runs, draw this many samples for FID/KID/precision-recall/IS/… (0 = skip;
            :func:`genlab.metrics.images.evaluate_model`).
        features: feature networks for those metrics (default: every one that serves the data).
        progress: ``fn(stage, done, total)`` called as the image metrics proceed.
        **model_options: evaluation-time model settings, e.g. ``iwae_k=1000`` for the VAE.
    """
    model = load(run)
    if model_options:
        model.config = build(type(model.config), model_options, base=model.config)
    test = test_split(run)
    if max_examples is not None:
        if max_examples < 1:
            raise ConfigError(f"--max-examples must be at least 1, got {max_examples}")
        test = test.head(max_examples)
    if model.spec.kind == "text":
        from genlab.metrics.text import continuation_report, language_model_report

        tok = model.tokenizer  # type: ignore[attr-defined]
        report = language_model_report(model, test.x, tok, batch_size)
        if continuations:
            report.update(continuation_report(model, test.x, tok, continuations))
    else:
        report = likelihood_report(model, test, batch_size)
    result: dict[str, Any] = {"family": model.family, "data": model.run_config["data"]["data"],  # type: ignore
                              "split": "test", **report}
    if dataclasses.is_dataclass(model.config):
        result["model_options"] = {k: getattr(model.config, k) for k in model_options}
    if samples and model.spec.kind == "image":
        from genlab.metrics.images import evaluate_model

        result["images"] = evaluate_model(model, samples, features=features, progress=progress or (lambda *a: None))
    if write:
        ckpt.write_json(Path(run) / "eval.json", result)
    return result


def capabilities(family: str) -> dict[str, bool]:
    cls = MODELS[family]
    return {"exact_likelihood": cls.exact_likelihood, "likelihood_bound": cls.likelihood_bound,
            "latent_space": cls.latent_space}



def inpaint(model_or_run: GenerativeModel | str | Path, images: Tensor, mask: Tensor, *,
            label: int | Tensor | None = None, seed: int = 0, **options: Any) -> Tensor:
    """Fill the masked region of ``uint8`` images with a family that can inpaint (diffusion: RePaint).

    Arguments:
        model_or_run: a model or a run folder.
        images: ``uint8`` images ``(N, C, H, W)`` or one image ``(C, H, W)`` of the model's shape.
        mask: boolean, True where pixels are to be filled: ``(H, W)``, ``(N, 1, H, W)`` or like ``images``.
        label: class label (one, or one per image) for a conditional model; None uses the unconditional model.
        seed: seed of the sampling generator.
        **options: the family's sampling options (sampler, steps, resample, …).

    Returns:
        ``uint8`` images ``(N, C, H, W)`` equal to ``images`` outside the mask.

    Raises:
        CapabilityError: for a family that cannot inpaint; ConfigError/DataError for images or masks that do not
            fit the model.

    References:
        Lugmayr et al., "RePaint", 2022, arXiv:2201.09865.
    """
    from genlab.errors import CapabilityError, DataError

    model = _model(model_or_run)
    fill = getattr(model, "inpaint", None)
    if not callable(fill):
        raise CapabilityError(f"family '{model.family}' cannot inpaint; use a diffusion run")
    opts = sample_options(model, options)
    x = torch.as_tensor(images)
    x = x[None] if x.ndim == 3 else x
    if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != tuple(model.spec.shape):
        raise DataError(f"images must be uint8 of shape (N, {', '.join(map(str, model.spec.shape))}), got "
                        f"{x.dtype} {tuple(x.shape)}")
    m = torch.as_tensor(mask).bool()
    m = m[None, None] if m.ndim == 2 else m
    try:
        m = m.expand_as(x)
    except RuntimeError:
        raise ConfigError(f"mask of shape {tuple(torch.as_tensor(mask).shape)} does not fit images of shape "
                          f"{tuple(x.shape)}; give (H, W), (N, 1, H, W) or the images' shape") from None
    if not m.any():
        raise ConfigError("the mask selects no pixels to fill; mark the region to fill")
    g = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        return fill(x, ~m, label, generator=g, **opts).cpu()
