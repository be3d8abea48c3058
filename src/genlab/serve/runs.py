"""A served run: its worker, its drift monitor, what it offers (for ``/v1/models`` and the page), and the
operations the routes call — sampling (micro-batched), text generation (streamed, micro-batched), interpolation,
inpainting, gold pairs. Everything goes through the run's modality and the family's capability flags."""

from __future__ import annotations

import base64
import collections
import dataclasses
import logging
import math
import random
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genlab import api
from genlab.apps.latent import interpolate
from genlab.errors import CapabilityError, ConfigError, DataError, GenlabError
from genlab.modalities.base import TextBatch, TextDelta
from genlab.run import Run
from genlab.serve.config import ServeConfig
from genlab.serve.drift import DriftMonitor, reference_seed
from genlab.serve.workers import Cancelled, Job, Worker

log = logging.getLogger("genlab.serve")

#: sampling options the server caps (``ServeConfig`` field → option name)
CAPPED = {"max_tokens": "max_tokens", "max_steps": "steps"}
#: seconds a text call admits requests that queue while it runs (iteration-level batching); then it drains
JOIN_WINDOW = 5.0
#: sampling options the server sets itself (a progress bar has no place in a server)
FORCED = {"progress": False}


def fresh_seed() -> int:
    """A random seed for a request that gave none."""
    return random.SystemRandom().randrange(2**31)


def option_schema(cls: type | None) -> list[dict[str, Any]]:
    """The fields of a sampling-options dataclass as JSON for the page: name, type, default, choices, help."""
    if cls is None:
        return []
    hints = typing.get_type_hints(cls)
    docs = _arg_docs(cls.__doc__ or "")
    out = []
    for f in dataclasses.fields(cls):
        if f.name in FORCED:
            continue
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = type(None) in typing.get_args(tp)
        base = args[0] if optional and len(args) == 1 else tp
        kind, choices = "str", None
        if typing.get_origin(base) is typing.Literal:
            kind, choices = "choice", list(typing.get_args(base))
        elif base is bool:
            kind = "bool"
        elif base is int:
            kind = "int"
        elif base is float:
            kind = "float"
        elif typing.get_origin(base) is tuple:
            kind = "list"
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append({"name": f.name, "type": kind, "default": list(default) if isinstance(default, tuple) else default,
                    "optional": optional, "choices": choices, "help": docs.get(f.name, "")})
    return out


def _arg_docs(doc: str) -> dict[str, str]:
    """``name → first line`` of the ``Arguments:`` section of a docstring."""
    out: dict[str, str] = {}
    inside = False
    for line in doc.splitlines():
        s = line.strip()
        if s == "Arguments:":
            inside = True
            continue
        if inside and s and ":" in s and not line.startswith(" " * 12):
            names, text = s.split(":", 1)
            for name in names.split(","):
                out[name.strip()] = text.strip()
        elif inside and not s and out:
            break
    return out


@dataclass
class SampleBatch:
    """What a sample request got: samples, their labels (when known), the seed and how many requests shared the
    model call (a batched request's samples come from the batch's seed)."""

    x: Tensor
    labels: Tensor | None
    seed: int
    batched: int
    ids: list[str] = dataclasses.field(default_factory=list)


@dataclass
class Rendering:
    """A rendering of samples by the run's modality."""

    mime: str
    data: bytes

    def to_json(self) -> dict[str, str]:
        """``{"mime", "data"}``: text as it is, anything else base64."""
        if self.mime.startswith("text/"):
            return {"mime": self.mime, "text": self.data.decode("utf-8", "replace")}
        return {"mime": self.mime, "b64": base64.b64encode(self.data).decode("ascii")}


class ServedRun:
    """One run behind the server.

    Arguments:
        name: its name in requests (``model``).
        run: the loaded run.
        config: the server's options.
        on_call: metrics callback of its worker.
    """

    def __init__(self, name: str, run: Run, config: ServeConfig,
                 on_call: Callable[[str, int, int, float], None] | None = None,
                 on_check: Callable[[str, Any], None] | None = None) -> None:
        self.name, self.run, self.cfg = name, run, config
        self.model = run.model
        self.modality = run.modality
        self.worker = Worker(name, self.model, queue_size=config.queue_size, max_batch=config.max_batch,
                             batch_wait=config.batch_wait, batching=config.batching, timeout=config.timeout,
                             on_call=None if on_call is None else lambda s, j, t: on_call(name, s, j, t))
        self.monitor: DriftMonitor | None = None
        if config.drift_window:
            self.monitor = DriftMonitor(name, run, window=config.drift_window, reference=config.drift_reference,
                                        null=config.drift_null, alpha=config.drift_alpha, seed=config.seed,
                                        on_check=None if on_check is None else lambda c: on_check(name, c))
        self._cache: collections.OrderedDict[str, tuple[Tensor, int | None]] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._info: dict[str, Any] | None = None
        self.gold_pool: Tensor | None = None
        self.gold_error: str | None = None
        warm = api.sample(run, 1, seed=0, **self.options({}))
        self.item_mime = self.render(warm).mime  # how one sample renders (image/png, text/plain, …)

    # -- what it offers ------------------------------------------------------------------------------
    @property
    def conditional(self) -> bool:
        return self.model.conditional

    @property
    def can_complete(self) -> bool:
        """Text completions: the modality streams text and takes prompts, and the family streams."""
        caps = self.modality.capabilities
        return "stream" in caps and "prompt" in caps and self.model.streaming

    @property
    def can_inpaint(self) -> bool:
        return self.model.inpainting and "inpaint" in self.modality.capabilities

    @property
    def can_interpolate(self) -> bool:
        return self.model.has_latent_space

    def info(self) -> dict[str, Any]:
        """``/v1/models`` entry: OpenAI fields plus what the page needs to build its controls."""
        if self._info is None:
            self._info = self._describe()
        return self._info

    def _describe(self) -> dict[str, Any]:
        spec = self.run.spec
        cls = type(self.model).sample_options_cls
        return {"id": self.name, "object": "model", "created": int(_created(self.run)), "owned_by": "genlab",
                "family": self.run.family, "kind": self.modality.kind, "data": self.run.data,
                "shape": list(spec.shape), "form": spec.form, "item_mime": self.item_mime,
                "conditional": self.conditional, "classes": list(spec.class_names) if self.conditional else [],
                "capabilities": sorted(self.modality.capabilities),
                "sample_formats": list(self.modality.sample_formats),
                "likelihood": self.model.likelihood, "latent_space": self.model.has_latent_space,
                "inpainting": self.can_inpaint, "streaming": self.can_complete, "completions": self.can_complete,
                "interpolation": self.can_interpolate, "options": option_schema(cls)}

    # -- validation ----------------------------------------------------------------------------------
    def options(self, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validated sampling options (family defaults filled in), capped by the server.

        Raises:
            ConfigError: for unknown options, bad values or values over a cap.
        """
        raw = dict(raw or {})
        names = self.model.sample_option_names()
        for key, forced in FORCED.items():
            if key in names:
                raw[key] = forced
        for cap_field, opt in CAPPED.items():
            cap = getattr(self.cfg, cap_field)
            value = raw.get(opt)
            if opt in names and isinstance(value, int | float) and not isinstance(value, bool) and value > cap:
                raise ConfigError(f"{opt} {raw[opt]} is over this server's cap of {cap}")
        opts = api.sample_options(self.model, raw)
        for cap_field, opt in CAPPED.items():
            cap = getattr(self.cfg, cap_field)
            if opt in opts and opts[opt] is None and _implied(self.run, opt) > cap:
                opts[opt] = cap  # the family's default is more than the server allows
        return opts

    def label(self, value: Any) -> int | None:
        """A class label from an int or a class name (None: any).

        Raises:
            ConfigError: for a label the model does not have; CapabilityError for a label on an unconditional model.
        """
        if value is None or value == "":
            return None
        if not self.conditional:
            raise CapabilityError(f"model {self.name} is unconditional; drop the label")
        names = list(self.run.spec.class_names)
        if isinstance(value, str) and value in names:
            return names.index(value)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"label must be a class index or name, got {value!r}")
        try:
            k = int(value)
        except ValueError:
            raise ConfigError(f"label {value!r} is not a class of model {self.name} (classes: "
                              f"{', '.join(names)})") from None
        if not 0 <= k < self.run.spec.num_classes:
            raise ConfigError(f"label {k} is out of range; model {self.name} has classes 0..{len(names) - 1}")
        return k

    def check_n(self, n: Any) -> int:
        """A sample count within the cap.

        Raises:
            ConfigError: for a non-integer, ``n < 1`` or ``n`` over the cap.
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise ConfigError(f"n must be an integer, got {n!r}")
        if n < 1:
            raise ConfigError(f"n must be at least 1, got {n}")
        if n > self.cfg.max_n:
            raise ConfigError(f"n {n} is over this server's cap of {self.cfg.max_n}")
        return n

    # -- sampling ------------------------------------------------------------------------------------
    def submit_samples(self, n: int, *, label: int | None = None, seed: int | None = None,
                       options: Mapping[str, Any] | None = None, condition: str | None = None) -> Job:
        """Queue a sample request (batched with compatible ones when it has no seed and no condition)."""
        opts = self.options(options)
        if condition is not None and "condition" not in self.modality.capabilities:
            raise CapabilityError(f"{self.modality.kind} data takes no condition")
        key = None if seed is not None or condition is not None else ("samples", _freeze(opts))
        return self.worker.submit(Job(self._run_samples, key=key, n=n,
                                      payload={"n": n, "label": label, "seed": seed, "options": opts,
                                               "condition": condition}))

    def _run_samples(self, jobs: list[Job]) -> None:
        first = jobs[0].payload
        opts, condition = first["options"], first["condition"]
        if len(jobs) == 1:
            seed = first["seed"] if first["seed"] is not None else fresh_seed()
            x = api.sample(self.run, first["n"], label=first["label"], seed=seed, condition=condition, **opts)
            labels = None if first["label"] is None else torch.full((len(x),), first["label"], dtype=torch.long)
            jobs[0].resolve(SampleBatch(x, labels, seed, 1))
        else:
            seed = fresh_seed()
            cond = None
            if self.conditional:
                g = torch.Generator().manual_seed(seed)
                k = self.run.spec.num_classes
                cond = torch.cat([torch.full((j.n,), j.payload["label"], dtype=torch.long)
                                  if j.payload["label"] is not None else torch.randint(0, k, (j.n,), generator=g)
                                  for j in jobs])
            x = api.sample(self.run, sum(j.n for j in jobs), label=cond, seed=seed, **opts)
            at = 0
            for j in jobs:
                j.resolve(SampleBatch(x[at : at + j.n], None if cond is None else cond[at : at + j.n], seed,
                                      len(jobs)))
                at += j.n
        if self.monitor is not None:
            self.monitor.observe(x)

    def remember(self, batch: SampleBatch) -> list[str]:
        """Keep the samples (for inpainting and the arena) under new ids; returns the ids."""
        import uuid

        ids = []
        with self._cache_lock:
            for i in range(len(batch.x)):
                sid = uuid.uuid4().hex[:16]
                self._cache[sid] = (batch.x[i : i + 1].clone(), None if batch.labels is None
                                    else int(batch.labels[i]))
                ids.append(sid)
            while len(self._cache) > 1024:
                self._cache.popitem(last=False)
        batch.ids = ids
        return ids

    def recall(self, sample_id: str) -> tuple[Tensor, int | None]:
        """A sample kept by :meth:`remember`.

        Raises:
            DataError: for an unknown (or forgotten) id.
        """
        with self._cache_lock:
            if sample_id not in self._cache:
                raise DataError(f"unknown sample_id {sample_id!r} for model {self.name} (the server keeps the "
                                "last 1,024 samples); draw a new sample")
            return self._cache[sample_id]

    def render(self, x: Tensor) -> Rendering:
        """The modality's rendering of samples."""
        mime, data = self.modality.render(self.run, x)
        return Rendering(mime, data)

    def render_file(self, x: Tensor, fmt: str, labels: Tensor | None = None) -> Rendering:
        """Samples written in one of the modality's file formats (``npz``, ``csv``, ``mid``, …).

        Raises:
            ConfigError: for a format the modality does not write.
        """
        if fmt not in self.modality.sample_formats:
            raise ConfigError(f"format must be one of {', '.join(self.modality.sample_formats)} for model "
                              f"{self.name}, got {fmt!r}")
        with tempfile.TemporaryDirectory(prefix="genlab-serve-") as tmp:
            path = Path(tmp) / f"samples.{fmt}"
            self.modality.write_samples(self.run, x, path, fmt, labels, api.output_options(self.run, {}))
            return Rendering(_FORMAT_MIME.get(fmt, "application/octet-stream"), path.read_bytes())

    # -- text --------------------------------------------------------------------------------------
    def submit_text(self, n: int, *, seed: int | None, options: Mapping[str, Any],
                    sink: Callable[[list[TextDelta] | None], None]) -> Job:
        """Queue a text generation; ``sink`` receives, in the worker thread, the :class:`TextDelta` of each step
        (indices local to this request; one call per step) and None at the end. Batched with requests of the same
        options when it has no seed.

        Raises:
            CapabilityError: when the run does not generate streamed text.
        """
        if not self.can_complete:
            raise CapabilityError(f"model {self.name} does not complete text prompts; use /v1/samples")
        opts = self.options(options)
        probe = self.modality.stream_texts(self.run, 1, seed=0, options=opts)  # a bad prompt fails here, as a 400
        close = getattr(probe.steps, "close", None)
        if close is not None:
            close()
        key = None if seed is not None else ("text", _freeze(opts))
        return self.worker.submit(Job(self._run_text, key=key, n=n,
                                      payload={"n": n, "seed": seed, "options": opts, "sink": sink}))

    def _run_text(self, jobs: list[Job]) -> None:
        first = jobs[0].payload
        if jobs[0].key is not None and self.cfg.batching:
            seed = fresh_seed()
            try:
                rows = self.modality.text_batch(self.run, self.cfg.max_batch, seed=seed, options=first["options"])
            except GenlabError:  # the fixed-batch path below reports it to every job
                rows = None
            if rows is not None and sum(j.n for j in jobs) <= rows.room:
                self._run_text_rows(rows, seed, jobs)
                return
        seed = first["seed"] if first["seed"] is not None and len(jobs) == 1 else fresh_seed()
        total = sum(j.n for j in jobs)
        owner: list[tuple[Job, int]] = [(j, i) for j in jobs for i in range(j.n)]
        try:
            ts = self.modality.stream_texts(self.run, total, seed=seed, options=first["options"])
        except GenlabError as e:
            for j in jobs:
                j.payload["sink"](None)
                j.fail(e)
            return
        steps = ts.steps
        try:
            for step in steps:
                per_job: dict[int, list[TextDelta]] = {}
                for d in step:
                    job, local = owner[d.index]
                    if not job.cancelled.is_set():
                        per_job.setdefault(id(job), []).append(dataclasses.replace(d, index=local))
                for j in jobs:
                    if id(j) in per_job:
                        j.payload["sink"](per_job[id(j)])
                if all(j.cancelled.is_set() for j in jobs):
                    break
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()
            for j in jobs:
                j.payload["sink"](None)
        if all(j.cancelled.is_set() for j in jobs):
            raise Cancelled("every client of this generation went away")
        for j in jobs:
            j.resolve({"prompt_tokens": ts.prompt_tokens, "seed": seed, "batched": len(jobs)})
        if self.monitor is not None and ts.samples is not None:
            self.monitor.observe(ts.samples)

    def _run_text_rows(self, rows: TextBatch, seed: int, jobs: list[Job]) -> None:
        """Iteration-level batching: the jobs' generations share one network call per token, and compatible jobs
        that queue meanwhile join at the next step (for :data:`JOIN_WINDOW` seconds, after which the call drains
        and ends, so a call's length and the worker's wait estimate stay bounded)."""
        key = jobs[0].key
        owner: dict[int, tuple[Job, int]] = {}  # generation id → (its job, its index in the job)
        of_job: dict[int, list[int]] = {}  # id(job) → its generation ids
        left: dict[int, int] = {}  # id(job) → generations still running
        running: list[Job] = []

        def admit(new: list[Job]) -> None:
            for j in new:
                ids = [rows.add() for _ in range(j.n)]
                owner.update((rid, (j, i)) for i, rid in enumerate(ids))
                of_job[id(j)], left[id(j)] = ids, j.n
                running.append(j)

        def close(j: Job) -> None:
            running.remove(j)
            j.payload["sink"](None)

        admit(jobs)
        end = time.monotonic() + JOIN_WINDOW
        try:
            while running:
                for j in [j for j in running if j.cancelled.is_set()]:
                    for rid in of_job[id(j)]:
                        rows.remove(rid)
                    close(j)
                    j.fail(Cancelled("the client went away"))
                    self.worker.stats.cancelled += 1
                if not running:
                    break
                per_job: dict[int, list[TextDelta]] = {}
                done: list[Job] = []
                for d in rows.step():
                    job, local = owner[d.index]
                    per_job.setdefault(id(job), []).append(dataclasses.replace(d, index=local))
                    if d.finish is not None:
                        left[id(job)] -= 1
                        if not left[id(job)]:
                            done.append(job)
                for j in running:
                    if id(j) in per_job:
                        j.payload["sink"](per_job[id(j)])
                shared = len(running)  # requests that drew this step together
                for j in done:
                    close(j)
                    j.resolve({"prompt_tokens": rows.prompt_tokens, "seed": seed, "batched": shared})
                    if self.monitor is not None:
                        self.monitor.observe(rows.samples(of_job[id(j)]))
                if rows.room and time.monotonic() < end:
                    admit(self.worker.join(key, rows.room))
        finally:
            for j in list(running):
                close(j)

    # -- latent interpolation and inpainting ----------------------------------------------------------
    def submit_call(self, fn: Callable[[], Any]) -> Job:
        """Queue a one-off operation on the model (runs alone)."""
        def run(jobs: list[Job]) -> None:
            jobs[0].resolve(fn())

        return self.worker.submit(Job(run))

    def interpolate(self, seeds: tuple[int, int], steps: int, label: int | None, options: Mapping[str, Any]
                    ) -> Tensor:
        """``steps`` samples decoded along the latent path between the samples drawn with two seeds.

        Raises:
            CapabilityError: for a family without a latent space.
        """
        if not self.can_interpolate:
            raise CapabilityError(f"family '{self.run.family}' of model {self.name} has no latent space")
        opts = self.options(options)
        if self.conditional and label is None:
            label = int(torch.randint(0, self.run.spec.num_classes, (1,),
                                      generator=torch.Generator().manual_seed(seeds[0])))
        ends = torch.cat([api.sample(self.run, 1, label=label, seed=s, **opts) for s in seeds])
        return interpolate(self.run, ends[:1], ends[1:], steps, label=label)  # the family's own path (slerp, line)

    def inpaint(self, source: Tensor, mask_file: bytes | None, box: str | None, label: int | None, seed: int,
                options: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """Fill the masked part of ``source`` (one sample in the data representation); the mask comes as a file in
        the modality's mask format (a PNG for images, white = fill) or a box string, read by the modality.

        Returns:
            (the source, its mask, the filled sample).

        Raises:
            CapabilityError: for runs that cannot inpaint; ConfigError/DataError for a bad mask.
        """
        if not self.can_inpaint:
            raise CapabilityError(f"model {self.name} cannot inpaint (family '{self.run.family}')")
        opts = self.options(options)
        with tempfile.TemporaryDirectory(prefix="genlab-serve-") as tmp:
            mask_path = None
            if mask_file is not None:
                mask_path = Path(tmp) / "mask.png"
                mask_path.write_bytes(mask_file)
            x, m = self._read_inpaint(source, Path(tmp), box, mask_path)
        filled = api.inpaint(self.run, x, m, label=label, seed=seed, **opts)
        xs, ms = self.modality.check_inpaint(self.run, x, m)
        return xs, ms, filled

    def _read_inpaint(self, source: Tensor, tmp: Path, box: str | None, mask: Path | None) -> tuple[Tensor, Tensor]:
        """The source and mask as the modality's inpainting reader reads them: the source is written in the first
        of the modality's sample formats that the reader reads back unchanged."""
        last: GenlabError | None = None
        for fmt in self.modality.sample_formats:
            path = tmp / f"source.{fmt}"
            self.modality.write_samples(self.run, source, path, fmt)
            try:
                x, m = self.modality.read_inpaint_inputs(self.run, path, box, mask)
            except (DataError, ConfigError) as e:
                last = e
                if "mask" in str(e) or "box" in str(e):
                    raise
                continue
            if x.shape[1:] == source.shape[1:] and torch.equal(x.to(source.dtype), source):
                return x, m
        raise last or DataError(f"model {self.name}'s samples cannot be read back for inpainting")

    # -- gold pairs ----------------------------------------------------------------------------------
    def load_gold(self) -> None:
        """Load real held-out examples for gold pairs (a failure only turns gold pairs off for this run)."""
        try:
            self.gold_pool = api.load_splits(self.run).test.head(256).x
        except Exception as e:
            self.gold_error = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.info("gold pairs of %s are off: %s", self.name, self.gold_error)

    def gold_pair(self, rng: random.Random) -> tuple[Tensor, Tensor] | None:
        """A real held-out example and its corruption (None when gold pairs are off for this run)."""
        pool = self.gold_pool
        if pool is None or len(pool) == 0:
            return None
        i = rng.randrange(len(pool))
        real = pool[i : i + 1]
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        return real, self.modality.corrupt(self.run, real, g)

    # -- drift reference -------------------------------------------------------------------------------
    def start_reference(self, chunk: int = 50) -> None:
        """Draw the drift reference in background jobs of ``chunk`` samples (between requests)."""
        monitor = self.monitor
        if monitor is None:
            return
        total = monitor.total_reference
        names = self.model.sample_option_names()
        try:  # the drift options this family has (one server config serves every family)
            opts = self.options({k: v for k, v in self.cfg.drift_options.items() if k in names})
        except GenlabError as e:
            monitor.fail(f"bad drift options: {e}")
            return
        parts: list[Tensor] = []
        seed = reference_seed(self.cfg.seed)

        def draw(jobs: list[Job]) -> None:
            k = len(parts)
            n = min(chunk, total - k * chunk)
            try:
                if "stream" in self.modality.capabilities and self.model.streaming:
                    ts = self.modality.stream_texts(self.run, n, seed=seed + k, options=opts)
                    for _ in ts.steps:
                        pass
                    assert ts.samples is not None
                    parts.append(ts.samples)
                else:
                    parts.append(api.sample(self.run, n, seed=seed + k, **opts))
            except Exception as e:
                monitor.fail(f"cannot draw the reference ({str(e).splitlines()[0] if str(e) else type(e)})")
                return
            if len(parts) * chunk >= total:
                monitor.set_reference(torch.cat(parts)[:total])
            else:
                self.worker.submit(Job(draw, background=True))

        self.worker.submit(Job(draw, background=True))

    def stop(self) -> None:
        self.worker.stop()
        if self.monitor is not None:
            self.monitor.stop()


_FORMAT_MIME = {"png": "image/png", "npz": "application/x-npz", "txt": "text/plain; charset=utf-8",
                "csv": "text/csv; charset=utf-8", "mid": "audio/midi", "midi": "audio/midi", "wav": "audio/wav",
                "smi": "chemical/x-daylight-smiles", "svg": "image/svg+xml", "json": "application/json"}


def _freeze(opts: Mapping[str, Any]) -> str:
    import json

    return json.dumps(opts, sort_keys=True, default=str)


def _implied(run: Run, option: str) -> float:
    """What a None option means for the run (a text model's block size for ``max_tokens``; 0 otherwise)."""
    if option == "max_tokens" and run.spec.form == "tokens":
        return float(run.spec.shape[0])
    return 0.0


def _created(run: Run) -> float:
    import datetime as dt

    stamp = run.config.get("created")
    if stamp:
        try:
            return dt.datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            pass
    return math.floor(run.path.stat().st_mtime) if run.path is not None else 0.0
