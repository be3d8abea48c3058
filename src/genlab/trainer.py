"""The one Trainer: it drives any family through ``param_groups()`` and ``loss(batch, group)``.

Per step it draws the global batch (a function of seed and step only), splits it into ``grad_accum`` micro-batches
and, under ``torchrun``, each micro-batch into one shard per rank; then for each param group in order it zeroes all
gradients, accumulates ``loss / grad_accum`` over the micro-batches, checks the loss is finite, clips and steps that
group's optimizer. Learning rates follow linear warmup then cosine decay; an EMA of the weights is kept for
sampling. Checkpoints (safetensors + JSON, atomic) hold everything ``--resume`` needs to continue bit-for-bit.

Fast defaults: ``--precision auto`` runs bf16 autocast only where the device computes bf16 natively
(:func:`native_bf16`), and ``--compile auto`` compiles the training loss only when the run is long enough for the
compilation to pay for itself and keeps it only when the compiled steps are measured faster (:class:`AutoCompile`).
``--early-stop PATIENCE`` stops when the held-out loss has not improved for that many evaluations and keeps the
weights of the best one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import util as _import_util
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from genlab import checkpoint as ckpt
from genlab.config import check, parse_duration
from genlab.core import Batch, GenerativeModel
from genlab.data import Dataset
from genlab.errors import CheckpointError, ConfigError, TrainingDiverged


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings (every field is a ``--field-name`` option of ``genlab train``).

    Arguments:
        batch_size: global examples per optimizer step (over all ranks and micro-batches).
        optimizer: ``adam``, ``adamw``, ``rmsprop`` or ``sgd``.
        lr: peak learning rate.
        betas: Adam/AdamW betas.
        momentum: momentum for SGD and RMSprop.
        weight_decay: weight decay (decoupled for AdamW, L2 otherwise) of weights with 2+ dimensions; biases
            and normalization gains are not decayed.
        warmup_steps: linear warmup steps.
        schedule: ``cosine`` decay to ``min_lr_ratio · lr`` over the run, or ``constant``.
        min_lr_ratio: final learning rate as a fraction of ``lr`` (cosine).
        grad_clip: clip each group's gradient norm to this (0 = off).
        ema_decay: decay of the weight EMA used for sampling (0 = off).
        grad_accum: micro-batches per step (``batch_size`` must divide evenly).
        precision: ``auto`` — bf16 autocast where the device runs bf16 natively (:func:`native_bf16`: CUDA with
            compute capability 8+, x86 CPUs with AVX512-BF16 or AMX, Arm CPUs with BF16), fp32 elsewhere, and
            always fp32 for DP-SGD and for families with ``bf16_auto = False`` (flows); ``fp32``; or ``bf16``
            (autocast on CPU and CUDA, emulated and slow where not native).
        compile: ``auto`` — compile the training loss with ``torch.compile`` when it pays for itself within the run
            (:class:`AutoCompile`); ``true`` — always, from the first step (which then includes the
            compilation); ``false`` — never.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seeds torch, numpy and python, model init, data order and training noise.
        max_steps: stop after this many optimizer steps.
        epochs: stop after this many passes over the training split.
        budget: stop after this much training wall-clock time, e.g. ``90s``, ``2m``, ``1h``.
        checkpoint_every: write a checkpoint every N steps (and always at the end).
        log_every: write averaged metrics every N steps.
        eval_every: compute the loss on a fixed test subset every N steps (0 = off).
        eval_examples: size of that test subset.
        early_stop: stop when the held-out loss (``test/loss``, every ``eval_every`` steps) has not improved for
            this many evaluations in a row, and keep the weights of the best evaluation (0 = off).
        n_samples: samples in the run's ``samples.png``.
        quiet: no progress bar.
        dp_epsilon: train with DP-SGD to this privacy budget ε (None = off; ``inf`` clips without noise); needs
            ``max_steps`` or ``epochs`` (:mod:`genlab.audit.privacy`, the ``audit`` extra).
        dp_delta: the δ of the (ε, δ) guarantee (below 1 / training examples).
        dp_max_grad_norm: per-example gradient clipping norm C of DP-SGD.
    """

    batch_size: int = 64
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    grad_accum: int = 1
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool | Literal["auto"] = "auto"
    device: str = "auto"
    seed: int = 0
    max_steps: int | None = None
    epochs: float | None = None
    budget: str | None = None
    checkpoint_every: int = 500
    log_every: int = 25
    eval_every: int = 250
    eval_examples: int = 256
    early_stop: int = 0
    n_samples: int = 64
    quiet: bool = False
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        check(self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}")
        check(self.lr > 0, f"--lr must be positive, got {self.lr}")
        check(all(0 <= b < 1 for b in self.betas), "--betas must be two numbers in [0, 1)")
        check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(self.warmup_steps >= 0, "--warmup-steps must be >= 0")
        check(0 <= self.min_lr_ratio <= 1, "--min-lr-ratio must be in [0, 1]")
        check(self.grad_clip >= 0, "--grad-clip must be >= 0 (0 = off)")
        check(0 <= self.ema_decay < 1, "--ema-decay must be in [0, 1) (0 = off)")
        check(self.grad_accum >= 1, "--grad-accum must be >= 1")
        check(self.batch_size % self.grad_accum == 0,
              f"--batch-size {self.batch_size} must be divisible by --grad-accum {self.grad_accum}")
        check(self.max_steps is None or self.max_steps > 0, "--max-steps must be positive")
        check(self.epochs is None or self.epochs > 0, "--epochs must be positive")
        check(self.checkpoint_every > 0 and self.log_every > 0, "--checkpoint-every/--log-every must be positive")
        check(self.eval_every >= 0 and self.eval_examples > 0, "--eval-every must be >= 0")
        check(self.n_samples > 0, "--n-samples must be positive")
        check(self.early_stop >= 0, "--early-stop must be >= 0 (0 = off)")
        check(self.early_stop == 0 or self.eval_every > 0,
              "--early-stop needs held-out evaluations: set --eval-every to a positive number of steps")
        if self.budget is not None:
            parse_duration(self.budget)
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
              f"--device must be auto, cpu, cuda or cuda:N, got {self.device}")
        if self.dp_epsilon is not None:
            from genlab.audit.privacy import check_dp

            check_dp(self.dp_epsilon, self.dp_delta, self.dp_max_grad_norm)
            check(self.compile is not True, "--compile does not work with --dp-epsilon (Opacus' per-example hooks)")
            check(self.precision != "bf16", "--precision bf16 does not work with --dp-epsilon (Opacus' per-example "
                  "gradients are fp32); use --precision fp32 or auto")

    @property
    def budget_seconds(self) -> float | None:
        return None if self.budget is None else parse_duration(self.budget)


DEFAULT_MAX_STEPS = 2000


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → the local CUDA device when present (per ``LOCAL_RANK`` under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA device is available; use --device cpu")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return torch.device(name)


def _cpu_flags() -> set[str]:
    """Feature flags of the first CPU in ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products natively, so bf16 autocast speeds training up.

    CUDA: compute capability 8.0 or newer (``torch.cuda.is_bf16_supported(including_emulation=False)``). x86 CPUs:
    the AVX512-BF16 or AMX-BF16 instructions (``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``,
    which ask cpuinfo, or the ``avx512_bf16`` / ``amx_bf16`` flags of ``/proc/cpuinfo``); an AVX2 or plain AVX512
    CPU only emulates bf16, which is slower than fp32. Arm CPUs: the BF16 extension (``bf16`` feature). Anything
    else (MPS, other CPUs): False.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type != "cpu":
        return False
    arch = platform.machine().lower()
    flags = _cpu_flags()
    if arch in ("x86_64", "amd64", "i386", "i686"):
        probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        if any(bool(p()) for p in probes if p is not None):
            return True
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    if arch in ("aarch64", "arm64"):
        return "bf16" in flags
    return False


def resolve_precision(precision: str, device: torch.device, bf16_ok: bool = True) -> Literal["fp32", "bf16"]:
    """``fp32`` or ``bf16`` for a ``--precision`` setting on ``device`` (``auto``: :func:`native_bf16`, and fp32
    when the run cannot take bf16, ``bf16_ok=False``: DP-SGD, or a family with ``bf16_auto = False``)."""
    if precision == "auto":
        return "bf16" if bf16_ok and native_bf16(device) else "fp32"
    return "bf16" if precision == "bf16" else "fp32"


def can_compile(device: torch.device) -> bool:
    """Whether ``torch.compile``'s default backend can generate code here: a C++ compiler for CPU kernels, Triton
    for CUDA ones (without them compilation fails at the first step)."""
    if device.type == "cpu":
        return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))
    if device.type == "cuda":
        return _import_util.find_spec("triton") is not None
    return False


class AutoCompile:
    """``--compile auto``: compile the training loss when it pays for itself within the run, and keep it only if it
    is measured faster.

    1. The first ``probe`` steps run eagerly; the mean time of steps ``2 … probe`` is the eager step time.
    2. From it and the run's limits the remaining training time is estimated (``max_steps``/``epochs`` × eager
       step time, or what is left of ``--budget``). Compilation typically costs 10–60 s on a CPU and gives
       1.1–1.7× on small models, so it pays for itself only on long runs: the loss is compiled when at least
       ``min_remaining_s`` (3 minutes on CPU, 1 on CUDA) of training remain and the device can compile.
    3. The first compiled step includes the compilation; the next ``probe`` compiled steps are timed, and unless
       they are at least 3 % faster than the eager ones the trainer goes back to the eager loss for the rest of
       the run (the compilation was then the only cost).

    When compilation was tried, the decision and both step times are written to ``metrics.jsonl`` (a
    ``compile`` row); the run's summary says whether the loss ran compiled.
    """

    probe = 8
    min_speedup = 1.03

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.state = "eager"  # eager -> compiling -> on | off
        self.reason = ""
        self.times: list[float] = []
        self.eager_s = self.compiled_s = float("nan")
        self.min_remaining_s = 60.0 if trainer.device.type == "cuda" else 180.0

    def remaining_s(self, step_s: float) -> float:
        """Estimated training time left at an eager step time of ``step_s``."""
        t = self.trainer
        left = math.inf
        if t.total_steps is not None:
            left = (t.total_steps - t.step) * step_s
        if t.budget is not None:
            left = min(left, t.budget - t.elapsed)
        return left

    def after_step(self, seconds: float) -> dict[str, Any] | None:
        """Record one step's duration; returns a metrics row when a decision was taken."""
        if self.state in ("on", "off"):
            return None
        t = self.trainer
        self.times.append(seconds)
        if self.state == "eager" and len(self.times) >= self.probe:
            self.eager_s = float(np.mean(self.times[1:]))
            self.times = []
            if can_compile(t.device) and self.remaining_s(self.eager_s) >= self.min_remaining_s:
                self.state = "compiling"
                t.forward = torch.compile(t.ddp)
                return None
            self.state = "off"
            self.reason = "too short to pay for the compilation" if can_compile(t.device) else \
                "no compiler for this device"
            return None
        if self.state == "compiling" and len(self.times) >= self.probe + 1:  # the first includes compilation
            self.compiled_s = float(np.mean(self.times[1:]))
            keep = self.eager_s / self.compiled_s >= self.min_speedup
            self.state = "on" if keep else "off"
            self.reason = "faster" if keep else "not faster than eager"
            if not keep:
                t.forward = t.ddp
            return {"compile": self.state, "eager_step_s": self.eager_s, "compiled_step_s": self.compiled_s,
                    "compile_s": self.times[0] - self.compiled_s}
        return None


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when started by ``torchrun`` (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


class EMA:
    """Exponential moving average of a model's floating-point parameters (buffers are copied).

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` so early averages are not dominated by the init.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The configured optimizer; Adam and AdamW use PyTorch's fused (single-kernel) implementation.

    Weight decay applies to tensors with two or more dimensions (matrices, convolution kernels, embeddings) and
    not to biases and normalization gains (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019;
    the GPT-2/nanoGPT convention).
    """
    groups: list[dict[str, Any]] = [{"params": params}]
    if cfg.weight_decay > 0 and any(p.dim() < 2 for p in params):
        groups = [{"params": [p for p in params if p.dim() >= 2]},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    lr, wd = cfg.lr, cfg.weight_decay
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, betas=cfg.betas, fused=True, lr=lr, weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, betas=cfg.betas, fused=True, lr=lr, weight_decay=wd)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, momentum=cfg.momentum, lr=lr, weight_decay=wd)
    return torch.optim.SGD(groups, momentum=cfg.momentum, lr=lr, weight_decay=wd)


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """Multiplier of ``lr`` at ``step``: linear warmup, then cosine from 1 to ``min_lr_ratio`` over ``progress``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    p = min(max(progress, 0.0), 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))


Callback = Callable[["Trainer", int, dict[str, float]], None]


class Trainer:
    """Train a :class:`GenerativeModel` on an :class:`Dataset`.

    Arguments:
        model: the family instance (already on its device or on CPU).
        train: training split.
        config: trainer settings.
        run_dir: folder for checkpoints and ``metrics.jsonl``; None trains without writing anything.
        test: test split for periodic evaluation losses.
        callbacks: called after every step as ``fn(trainer, step, logs)``; raising ``KeyboardInterrupt`` stops
            the run with a checkpoint, as Ctrl-C does.
    """

    def __init__(self, model: GenerativeModel, train: Dataset, config: TrainConfig,
                 run_dir: str | Path | None = None, test: Dataset | None = None,
                 callbacks: list[Callback] | tuple[Callback, ...] = ()) -> None:
        self.cfg = config
        self.device = resolve_device(config.device)
        self.dist = init_distributed(self.device)
        self.model = model.to(self.device)
        self.train_data, self.test_data = train, test
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks)
        world, accum = self.dist.world, config.grad_accum
        micro = config.batch_size // accum
        if micro % world:
            raise ConfigError(f"--batch-size {config.batch_size} / --grad-accum {accum} = {micro} is not divisible "
                              f"by the {world} processes; pick a batch size that is")
        self.steps_per_epoch = train.steps_per_epoch(config.batch_size)
        self.total_steps = config.max_steps
        if config.epochs is not None:
            by_epochs = math.ceil(config.epochs * self.steps_per_epoch)
            self.total_steps = min(self.total_steps or by_epochs, by_epochs)
        if self.total_steps is None and config.budget is None:
            self.total_steps = DEFAULT_MAX_STEPS
        self.budget = config.budget_seconds
        self.groups = model.param_groups()
        if config.early_stop and (test is None or list(self.groups) != ["main"]):
            raise ConfigError("--early-stop needs a held-out split and a family with one loss (test/loss); "
                              + ("there is no test split" if test is None else
                                 f"this family trains the groups {', '.join(self.groups)}"))
        self.optimizers = {g: make_optimizer(config, ps) for g, ps in self.groups.items()}
        self.dp: Any = None  # DP-SGD (genlab.audit.privacy.DPSGD) when --dp-epsilon is set
        if config.dp_epsilon is not None:
            from genlab.audit.privacy import DPSGD

            if self.dist.world > 1:
                raise ConfigError("DP-SGD (--dp-epsilon) trains in one process; run it without torchrun")
            if self.total_steps is None:
                raise ConfigError("--dp-epsilon needs --max-steps or --epochs: the noise is set so that a planned "
                                  "number of steps spends the budget")
            self.dp = DPSGD(self.model, len(train), config.batch_size, self.total_steps, config.dp_epsilon,
                            config.dp_delta, config.dp_max_grad_norm)
        self.ema = EMA(self.model, config.ema_decay) if config.ema_decay > 0 else None
        self.ddp: nn.Module = self.model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=True)
        # auto stays in fp32 for DP-SGD (Opacus' per-example gradients are fp32) and families that declare it
        self.precision = resolve_precision(config.precision, self.device,
                                           self.dp is None and getattr(type(self.model), "bf16_auto", True))
        self.forward: Callable[..., Any] = torch.compile(self.ddp) if config.compile is True else self.ddp
        # --compile auto never compiles DP-SGD, whose per-example gradient hooks torch.compile cannot trace
        self.auto_compile = AutoCompile(self) if config.compile == "auto" and self.dp is None else None
        self.best: dict[str, Any] | None = None  # early stopping: best held-out loss, its step and weights
        self.bad_evals = 0
        self.stopped_early = False
        self.step = 0
        self.elapsed = 0.0
        self.last_checkpoint: int | None = None

    # -- public ------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until ``max_steps``/``epochs``/``budget``; returns a summary dict.

        Raises:
            TrainingDiverged: when a loss becomes NaN/inf (the last good checkpoint stays in place).
        """
        if resume:
            self.load_state()
        writer = self._tensorboard()
        window: dict[str, list[float]] = {}
        interrupted = False
        t_start = time.perf_counter() - self.elapsed
        with self._progress() as advance:
            try:
                while not self._done():
                    t_step = time.perf_counter()
                    logs = self.train_step()
                    self.step += 1
                    self.elapsed = time.perf_counter() - t_start
                    if self.auto_compile is not None:
                        row = self.auto_compile.after_step(time.perf_counter() - t_step)
                        if row is not None and self.dist.main:
                            self._write_metrics({"step": self.step, "elapsed": round(self.elapsed, 3), **row},
                                                None)
                    for k, v in logs.items():
                        window.setdefault(k, []).append(v)
                    if self.step % self.cfg.log_every == 0 or self._done():
                        self._log(window, writer)
                        window = {}
                    if self.test_data is not None and self.cfg.eval_every \
                            and self.step % self.cfg.eval_every == 0:
                        if self.dist.main:
                            self._log_eval(writer)
                        if self.cfg.early_stop:
                            self._sync_early_stop()
                    if self.step % self.cfg.checkpoint_every == 0:
                        self.save_state()
                    advance(self, logs)
                    for cb in self.callbacks:
                        cb(self, self.step, logs)
            except KeyboardInterrupt:
                interrupted = True
        if window:
            self._log(window, writer)
        if self.last_checkpoint != self.step:
            self.save_state()
        if writer is not None:
            writer.close()
        if self.dist.world > 1:
            dist.barrier()
        out: dict[str, Any] = {"step": self.step, "elapsed": self.elapsed, "interrupted": interrupted,
                               "steps_per_s": self.step / max(self.elapsed, 1e-9), "precision": self.precision}
        if self.auto_compile is not None:
            out["compile"] = self.auto_compile.state == "on"
        if self.cfg.early_stop and self.best is not None:
            out.update(stopped_early=self.stopped_early, best_step=self.best["step"],
                       best_test_loss=self.best["loss"])
        if self.dp is not None:
            out["privacy"] = self.dp.report()
            self.dp.module.remove_hooks()  # the sampling copy and later calls need no per-example gradients
        return out

    def train_step(self) -> dict[str, float]:
        """One optimizer step for every param group; returns floats to log."""
        cfg, step = self.cfg, self.step
        progress = step / self.total_steps if self.total_steps else self.elapsed / (self.budget or 1.0)
        if self.budget and self.total_steps:
            progress = max(progress, self.elapsed / self.budget)
        lr = cfg.lr * lr_factor(cfg, step, progress)
        micros = list(self._micro_batches(step))
        logs: dict[str, float] = {"lr": lr}
        for group, params in self.groups.items():
            opt = self.optimizers[group]
            for pg in opt.param_groups:
                pg["lr"] = lr
            self.model.zero_grad(set_to_none=True)
            total = torch.zeros((), device=self.device)
            extra: dict[str, float] = {}
            private = self.dp is not None and group in self.dp.groups
            for i, b in enumerate(micros):
                sync = contextlib.nullcontext()
                if self.dist.world > 1 and i < len(micros) - 1:
                    sync = self.ddp.no_sync()  # type: ignore[operator]
                with sync:
                    with self._autocast():
                        loss, out = self.forward(b, group)
                    (loss / len(micros)).backward()
                if private:  # per-example gradients of each example's own (mean-reduced) loss, clipped
                    self.dp.accumulate(params, len(b) * len(micros))
                total += loss.detach().float()
                for k, v in out.items():
                    extra[k] = extra.get(k, 0.0) + v / len(micros)
            if self.dist.world > 1:  # average the loss and the logged extras over ranks
                packed = torch.tensor([total.item(), *extra.values()], dtype=torch.float64, device=self.device)
                dist.all_reduce(packed)
                packed /= self.dist.world
                total = packed[0]
                extra = dict(zip(extra, packed[1:].tolist(), strict=True))
            value = float(total) / max(len(micros), 1)  # a DP Poisson batch may be empty
            if not math.isfinite(value):
                where = (f"the last good checkpoint (step {self.last_checkpoint}) is kept in {self.run_dir}"
                         if self.last_checkpoint is not None and self.run_dir is not None
                         else "no checkpoint had been written yet")
                raise TrainingDiverged(f"loss of group '{group}' became {value} at step {step + 1}; training "
                                       f"stopped and {where}; lower --lr or set --grad-clip")
            if private:
                self.dp.finish(params)  # clipped sum + Gaussian noise, over the expected batch size
            elif cfg.grad_clip > 0:
                logs[f"grad_norm/{group}"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            name = "loss" if group == "main" else f"loss/{group}"
            logs[name] = value
            logs.update({k if group == "main" else f"{group}/{k}": v for k, v in extra.items()})
        if self.dp is not None:
            self.dp.step_done()
            if math.isfinite(self.dp.epsilon):
                logs["dp/epsilon"] = self.dp.epsilon
        if self.ema is not None:
            self.ema.update(self.model)
        return logs

    def sampling_model(self) -> GenerativeModel:
        """A copy of the model carrying the weights to sample from — those of the best held-out evaluation with
        ``--early-stop``, else the EMA weights — (or the model itself without either), in eval mode."""
        weights = self.sampling_weights()
        if weights is None:
            return self.model.eval()
        m = copy.deepcopy(self.model)
        m.load_state_dict(weights)
        return m.eval()

    def sampling_weights(self) -> dict[str, Tensor] | None:
        """The weights written to ``model.safetensors``: the best evaluation's under ``--early-stop``, the EMA's
        with ``--ema-decay``, else None (the model's own)."""
        if self.best is not None:
            return self.best["weights"]
        return self.ema.state_dict() if self.ema is not None else None

    # -- early stopping --------------------------------------------------------------------------------
    def _check_early_stop(self, logs: dict[str, float]) -> None:
        """Track the best ``test/loss``; stop after ``early_stop`` evaluations without improvement."""
        loss = logs["test/loss"]
        if self.best is None or loss < self.best["loss"]:
            src = self.ema.state_dict() if self.ema is not None else self.model.state_dict()
            self.best = {"loss": loss, "step": self.step, "weights": {k: v.detach().clone() for k, v in src.items()}}
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        if self.bad_evals >= self.cfg.early_stop:
            self.stopped_early = True

    def _sync_early_stop(self) -> None:
        """Rank 0 decides (it holds the held-out losses); every rank stops at the same step."""
        if self.dist.world > 1:
            flag = torch.tensor([float(self.stopped_early)], device=self.device)
            dist.broadcast(flag, src=0)
            self.stopped_early = bool(flag.item())

    # -- batches ---------------------------------------------------------------------------------
    def _micro_batches(self, step: int) -> Iterator[Batch]:
        """This rank's shards of the step's micro-batches. Training noise is drawn for the whole global batch
        and sliced, so accumulation and DDP see exactly the noise a single-process full batch would."""
        if self.dp is not None:  # DP-SGD: a Poisson batch of varying size (one process)
            x, y = self.dp.batch(self.train_data, step, self.cfg.seed)
        else:
            x, y = self.train_data.batch(step, self.cfg.batch_size, self.cfg.seed)
        accum, world, rank = self.cfg.grad_accum, self.dist.world, self.dist.rank
        n = len(x)
        micro = -(-n // accum) if self.dp is not None else self.cfg.batch_size // accum
        per = micro // world
        seed = hash((self.cfg.seed, step)) & 0x7FFFFFFF
        for m in range(accum):
            lo = m * micro + rank * per
            if lo >= n:
                break
            yield Batch(x[lo : lo + per], None if y is None else y[lo : lo + per], seed=seed, offset=lo,
                        global_size=n).to(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _done(self) -> bool:
        done = (self.total_steps is not None and self.step >= self.total_steps) or (
            self.budget is not None and self.elapsed >= self.budget) or self.stopped_early
        if self.dist.world > 1:  # every rank must stop at the same step; rank 0's clock decides
            flag = torch.tensor([float(done)], device=self.device)
            dist.broadcast(flag, src=0)
            done = bool(flag.item())
        return done

    # -- evaluation and logging -----------------------------------------------------------------------
    def eval_losses(self) -> dict[str, float]:
        """Mean loss of every group on the fixed test subset (training noise seeded per example).

        Gradients stay enabled because some objectives (e.g. WGAN-GP) differentiate inside the loss.
        """
        assert self.test_data is not None
        data = self.test_data.head(self.cfg.eval_examples)
        was = self.model.training
        self.model.eval()
        out: dict[str, float] = {}
        bs = max(1, min(256, len(data)))
        for group in self.groups:
            total, count = 0.0, 0
            for lo in range(0, len(data), bs):
                b = Batch(data.x[lo : lo + bs], None if data.y is None else data.y[lo : lo + bs], seed=lo
                          ).to(self.device)
                with self._autocast():
                    loss, _ = self.model.loss(b, group)
                total += float(loss.detach()) * len(b)
                count += len(b)
            out["test/loss" if group == "main" else f"test/loss/{group}"] = total / count
        self.model.zero_grad(set_to_none=True)
        self.model.train(was)
        return out

    def _log_eval(self, writer: Any) -> None:
        logs = self.eval_losses()
        if self.cfg.early_stop:
            self._check_early_stop(logs)
            logs = {**logs, "best_step": self.best["step"] if self.best else self.step}
        self._write_metrics({"step": self.step, "elapsed": round(self.elapsed, 3), **logs}, writer)

    def _log(self, window: dict[str, list[float]], writer: Any) -> None:
        if not self.dist.main:
            return
        row: dict[str, Any] = {"step": self.step, "elapsed": round(self.elapsed, 3)}
        row.update({k: float(np.mean(v)) for k, v in window.items()})
        self._write_metrics(row, writer)

    def _write_metrics(self, row: dict[str, Any], writer: Any) -> None:
        if self.run_dir is not None:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
        if writer is not None:
            for k, v in row.items():
                if k != "step":
                    writer.add_scalar(k, v, row["step"])

    def _tensorboard(self) -> Any:
        if self.run_dir is None or not self.dist.main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    @contextlib.contextmanager
    def _progress(self) -> Iterator[Callable[[Trainer, dict[str, float]], None]]:
        show = not self.cfg.quiet and self.dist.main and sys.stderr.isatty()
        if not show:
            yield lambda trainer, logs: None
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        by_time = self.total_steps is None
        total = self.budget if by_time else self.total_steps
        cols = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*cols, transient=False) as bar:
            task = bar.add_task(f"train {self.model.family}", total=total, status="")

            def advance(trainer: Trainer, logs: dict[str, float]) -> None:
                losses = " ".join(f"{k}={v:.4g}" for k, v in logs.items() if k.startswith("loss"))
                status = f"step {trainer.step} {losses} {trainer.step / max(trainer.elapsed, 1e-9):.1f} it/s"
                bar.update(task, completed=trainer.elapsed if by_time else trainer.step, status=status)

            yield advance

    # -- checkpoints -----------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Write the checkpoint (rank 0 only): train state first, then the weights to sample from."""
        self.last_checkpoint = self.step
        if self.run_dir is None or not self.dist.main:
            return
        meta = {"step": self.step, "format_version": ckpt.FORMAT_VERSION}
        tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        if self.best is not None:
            tensors.update({f"best.{k}": v for k, v in self.best["weights"].items()})
        opt_json = {}
        for g, opt in self.optimizers.items():
            t, j = ckpt.flatten_optimizer(f"optim.{g}", opt.state_dict())
            tensors.update(t)
            opt_json[g] = j
        rng_t, rng_j = ckpt.rng_state()
        tensors.update(rng_t)
        ckpt.write_tensors(self.run_dir / ckpt.STATE, tensors, meta)
        ckpt.write_json(self.run_dir / ckpt.STATE_JSON, {
            "step": self.step, "elapsed": self.elapsed, "world_size": self.dist.world,
            "ema_updates": self.ema.updates if self.ema else 0, "optimizers": opt_json, "rng": rng_j,
            "format_version": ckpt.FORMAT_VERSION, **({"dp": self.dp.state()} if self.dp is not None else {}),
            **({"early_stop": {"best_step": self.best["step"], "best_loss": self.best["loss"],
                               "bad_evals": self.bad_evals, "stopped": self.stopped_early}} if self.best else {})})
        if self.dp is not None:  # the ε actually spent so far, beside the weights it protects
            ckpt.write_json(self.run_dir / "privacy.json", self.dp.report())
        weights = self.sampling_weights() or self.model.state_dict()
        extra = {"best_step": self.best["step"]} if self.best is not None else {}
        ckpt.write_tensors(self.run_dir / ckpt.WEIGHTS, weights, {**meta, "ema": self.ema is not None, **extra})

    def load_state(self) -> None:
        """Restore model, EMA, optimizers, step, clock and RNG states from ``run_dir``.

        Raises:
            CheckpointError: when the run has no checkpoint or its files disagree.
        """
        if self.run_dir is None or not (self.run_dir / ckpt.STATE_JSON).is_file():
            raise CheckpointError(f"{self.run_dir} has no checkpoint to resume from; train without --resume")
        try:
            js = json.loads((self.run_dir / ckpt.STATE_JSON).read_text())
        except json.JSONDecodeError:
            raise CheckpointError(f"{self.run_dir / ckpt.STATE_JSON} is corrupt; cannot resume") from None
        tensors, meta = ckpt.read_tensors(self.run_dir / ckpt.STATE)
        if int(meta.get("step", -1)) != js["step"]:
            raise CheckpointError(f"the checkpoint files in {self.run_dir} disagree (steps {meta.get('step')} and "
                                  f"{js['step']}); the run was cut off mid-write")
        strip = lambda p: {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}  # noqa: E731
        try:
            self.model.load_state_dict(strip("model."))
        except RuntimeError as e:
            raise CheckpointError(f"the checkpoint in {self.run_dir} does not fit this model "
                                  f"({str(e).splitlines()[0]}); resume with the run's own settings") from None
        if self.ema is not None:
            ema = strip("ema.")
            self.ema.shadow = {k: v.to(self.device) for k, v in ema.items()} if ema else self.ema.shadow
            self.ema.updates = js.get("ema_updates", 0)
        es = js.get("early_stop")
        if es is not None and self.cfg.early_stop:
            self.best = {"loss": es["best_loss"], "step": es["best_step"],
                         "weights": {k: v.to(self.device) for k, v in strip("best.").items()}}
            self.bad_evals = es["bad_evals"]
        for g, opt in self.optimizers.items():
            opt.load_state_dict(ckpt.unflatten_optimizer(f"optim.{g}", tensors, js["optimizers"][g]))
        ckpt.set_rng_state(tensors, js["rng"])
        if self.dp is not None:
            self.dp.load_state(js.get("dp", {}))
        self.step, self.elapsed, self.last_checkpoint = js["step"], js["elapsed"], js["step"]
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.is_file() and self.dist.main:  # drop rows past the checkpoint: they are about to be redone
            rows = [r for r in metrics.read_text().splitlines() if r and json.loads(r)["step"] <= self.step]
            ckpt.write_bytes(metrics, ("\n".join(rows) + "\n" if rows else "").encode())
