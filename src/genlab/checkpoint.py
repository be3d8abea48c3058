"""Run folders and checkpoints: safetensors for tensors, JSON for everything else, every file written atomically.

A run folder holds::

    config.json              family, model/train/data configs, data spec, preprocessing, genlab + format version
    model.safetensors        the weights to sample from (the EMA weights when EMA is on); metadata: step
    train_state.safetensors  raw weights, EMA weights, optimizer tensors, RNG states (for exact --resume)
    train_state.json         step, elapsed time, optimizer scalars/param-groups, python/numpy RNG states
    metrics.jsonl            one JSON object per logged step
    samples.png              a grid of samples from the final weights

Nothing here ever unpickles: safetensors holds only raw tensors, JSON holds the rest.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genlab.errors import CheckpointError
from genlab.files import atomic as _atomic
from genlab.files import write_bytes as write_bytes
from genlab.files import write_json as write_json

FORMAT_VERSION = 2  # 2: DataSpec gained form, levels and info (format 1 had vocab_size); 1 still loads
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
STATE = "train_state.safetensors"
STATE_JSON = "train_state.json"


def _plain(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors with no shared storage (safetensors refuses aliases)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in tensors.items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[k] = t
    return out


def write_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Atomically write tensors to a safetensors file with string metadata."""
    meta_s = {k: str(v) for k, v in meta.items()}
    _atomic(Path(path), lambda tmp: save_file(_plain(tensors), tmp, metadata=meta_s))


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file and its metadata (no pickle involved).

    Raises:
        CheckpointError: when the file is missing or not a valid safetensors file.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} is missing; the run folder is incomplete")
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            meta = dict(f.metadata() or {})
        return load_file(str(p)), meta
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{p} is not a readable safetensors file ({str(e).splitlines()[0]})") from None


def read_run_config(run: str | Path) -> dict[str, Any]:
    """Read and check ``config.json`` of a run folder.

    Raises:
        CheckpointError: for a missing folder/file, bad JSON, a newer format version or an unknown family.
    """
    from genlab.core import MODELS

    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(f"run folder {run} does not exist; give the folder `genlab train` wrote")
    p = run / CONFIG
    if not p.is_file():
        raise CheckpointError(f"{run} has no {CONFIG}; it is not a genlab run folder")
    try:
        cfg = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p} is not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    version = cfg.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{run} was written by a newer genlab (format {version}, this one reads "
                              f"up to {FORMAT_VERSION}); upgrade genlab to load it")
    family = cfg.get("family")
    if family not in MODELS:
        raise CheckpointError(f"{run} holds an unknown family {family!r}; this genlab knows: "
                              f"{', '.join(MODELS)}")
    return cfg


# -- optimizer and RNG state <-> (tensors, JSON) ---------------------------------------------------

def flatten_optimizer(prefix: str, sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors (for safetensors) and plain JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{prefix}.{pid}.{key}"] = val
            else:
                scalars.setdefault(str(pid), {})[key] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(prefix: str, tensors: Mapping[str, torch.Tensor], js: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        pid, key = name[len(prefix) + 1 :].split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    for pid, st in js["scalars"].items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": js["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Capture torch (CPU + CUDA), numpy and python RNG states."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py = random.getstate()
    js = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [py[0], list(py[1]), py[2]]}
    return tensors, js


def set_rng_state(tensors: Mapping[str, torch.Tensor], js: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    v, st, g = js["python"]
    random.setstate((v, tuple(st), g))
