"""Helpers shared by the benchmark scripts: machine description and result writing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

OUT = Path(__file__).resolve().parent / "out"


def machine() -> dict[str, Any]:
    """CPU model, core count, torch version and threads of the machine the benchmark ran on."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available()
            else None, "python": platform.python_version()}


def write_results(name: str, results: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    return path


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*[f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols])
    Console().print(table)


def train_speed(family: str, options: dict[str, Any], precision: str, steps: int, warmup: int = 3) -> float:
    """Training steps/s of ``family`` with ``options`` at ``precision``: ``steps`` timed after ``warmup`` untimed."""
    import genlab
    from genlab.api import prepare
    from genlab.trainer import Trainer

    s = prepare(family, {**options, "precision": precision, "quiet": True, "max_steps": steps + warmup,
                         "eval_every": 0})
    genlab.api.seed_everything(0)
    trainer = Trainer(genlab.MODELS[family](s.model_cfg, s.train.spec), s.train, s.train_cfg)
    for _ in range(warmup):  # allocator, autocast caches
        trainer.train_step()
        trainer.step += 1
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
        trainer.step += 1
    return steps / (time.perf_counter() - t0)
