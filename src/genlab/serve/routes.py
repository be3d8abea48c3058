"""The API routes (imported by :func:`genlab.serve.app.create_app` once the ``serve`` extra is known to be
installed): health, models, OpenAI-compatible completions and image generations, samples in the
modality's own rendering, latent interpolation, inpainting, drift, Prometheus metrics, and the page."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from importlib import resources
from typing import Any

import torch
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from genlab.errors import ConfigError
from genlab.modalities.base import TextDelta
from genlab.serve.app import ServerState, read_json, to_http, wait_job
from genlab.serve.errors import HTTPError
from genlab.serve.runs import SampleBatch, ServedRun, fresh_seed

PAGE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
              "style.css": "text/css; charset=utf-8"}


def get(body: dict[str, Any], name: str, types: type | tuple[type, ...], default: Any = None,
        required: bool = False) -> Any:
    """A field of a JSON body checked against ``types`` (None = absent → ``default``).

    Raises:
        HTTPError: 400 for a missing required field or a value of the wrong type.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise HTTPError(400, f"missing field {name!r}")
        return default
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in _tuple(types))
    if float in _tuple(types) and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        names = "/".join(t.__name__ for t in _tuple(types))
        raise HTTPError(400, f"field {name!r} must be {names}, got {json.dumps(value)[:60]}")
    return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def sample_options(served: ServedRun, body: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sampling options of a request: its ``options`` object, plus top-level fields named like the family's
    options (OpenAI clients send extras at the top level)."""
    opts = get(body, "options", dict, {})
    names = {o["name"] for o in served.info()["options"]}
    top = {k: v for k, v in body.items() if k in names and k != "prompt"}
    return {**top, **opts, **(extra or {})}


def seed_of(body: dict[str, Any]) -> int | None:
    seed = get(body, "seed", int)
    if seed is not None and not 0 <= seed < 2**63:
        raise HTTPError(400, f"seed must be in 0..2**63-1, got {seed}")
    return seed


def add_routes(app: Any, state: ServerState) -> None:
    """Register the API routes and the page on ``app``."""

    cfg = state.cfg

    async def samples_for(request: Request, served: ServedRun, n: int, label: int | None, seed: int | None,
                          options: dict[str, Any], condition: str | None = None) -> SampleBatch:
        job = served.submit_samples(n, label=label, seed=seed, options=options, condition=condition)
        batch: SampleBatch = await wait_job(request, job, cfg.timeout)
        served.remember(batch)
        return batch

    # -- health, models, metrics, page -------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": len(state.runs), "uptime_s": round(time.time() - state.started, 1)}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [s.info() for s in state.runs.values()],
                "limits": {"max_n": cfg.max_n, "max_tokens": cfg.max_tokens, "max_steps": cfg.max_steps,
                           "max_body": cfg.max_body, "timeout": cfg.timeout}}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        return state.run(name).info()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/")
    async def page() -> Response:
        return _page_file("index.html")

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in PAGE_FILES:
            raise HTTPError(404, f"no page file {name!r}", "not_found_error")
        return _page_file(name)

    # -- samples in the modality's own rendering ----------------------------------------------------
    @app.post("/v1/samples")
    async def samples(request: Request) -> Response:
        body = await read_json(request)
        served = state.run(body.get("model"))
        n = served.check_n(get(body, "n", int, 1))
        label = served.label(body.get("label"))
        fmt = get(body, "format", str)
        raw = bool(get(body, "raw", bool, False))
        condition = get(body, "condition", str)
        batch = await samples_for(request, served, n, label, seed_of(body), sample_options(served, body),
                                  condition)
        headers = {"X-Genlab-Seed": str(batch.seed), "X-Genlab-Sample-Ids": ",".join(batch.ids),
                   "X-Genlab-Batched": str(batch.batched)}
        if fmt is not None:
            out = await run_in_threadpool(served.render_file, batch.x, fmt, batch.labels)
            return Response(out.data, media_type=out.mime, headers=headers)
        whole = await run_in_threadpool(served.render, batch.x)
        if raw:
            return Response(whole.data, media_type=whole.mime, headers=headers)
        items = await run_in_threadpool(lambda: [served.render(batch.x[i : i + 1]) for i in range(len(batch.x))])
        return JSONResponse({
            "model": served.name, "seed": batch.seed, "batched": batch.batched, "n": len(batch.x),
            "rendering": whole.to_json(),
            "samples": [{"id": sid, "label": None if batch.labels is None else int(batch.labels[i]),
                         "rendering": items[i].to_json()} for i, sid in enumerate(batch.ids)]}, headers=headers)

    # -- OpenAI: images --------------------------------------------------------------------------------
    @app.post("/v1/images/generations")
    async def images(request: Request) -> Response:
        body = await read_json(request)
        served = state.run(body.get("model") or _default_image_model(state))
        if not served.item_mime.startswith("image/"):
            raise HTTPError(400, f"model {served.name} renders its samples as {served.item_mime}, not images; "
                            "use /v1/samples")
        n = served.check_n(get(body, "n", int, 1))
        prompt = get(body, "prompt", str, "")
        label = served.label(body.get("label")) if body.get("label") is not None else _prompt_label(served, prompt)
        size = get(body, "size", str)
        shape = served.run.spec.shape
        if size is not None and size != "auto" and size != f"{shape[-1]}x{shape[-2]}":
            raise HTTPError(400, f"model {served.name} makes {shape[-1]}x{shape[-2]} images; size {size!r} is not "
                            "available")
        fmt = get(body, "response_format", str, "b64_json")
        accept = request.headers.get("accept", "")
        if fmt not in ("b64_json", "url", "png"):
            raise HTTPError(400, f"response_format must be b64_json, url or png, got {fmt!r}")
        batch = await samples_for(request, served, n, label, seed_of(body), sample_options(served, body))
        if fmt == "png" or accept.startswith("image/png"):
            whole = await run_in_threadpool(served.render, batch.x)
            return Response(whole.data, media_type=whole.mime,
                            headers={"X-Genlab-Seed": str(batch.seed), "X-Genlab-Sample-Ids": ",".join(batch.ids)})
        items = await run_in_threadpool(lambda: [served.render(batch.x[i : i + 1]) for i in range(len(batch.x))])
        data = []
        for it in items:
            b64 = base64.b64encode(it.data).decode("ascii")
            data.append({"b64_json": b64} if fmt == "b64_json" else {"url": f"data:{it.mime};base64,{b64}"})
        return JSONResponse({"created": int(time.time()), "data": data, "model": served.name, "seed": batch.seed})

    # -- OpenAI: completions ----------------------------------------------------------------------------
    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await read_json(request)
        served = state.run(body.get("model"))
        if not served.can_complete:
            raise HTTPError(400, f"model {served.name} does not complete text prompts ({served.run.family} on "
                            f"{served.modality.kind} data); use /v1/samples")
        prompts = body.get("prompt", "")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise HTTPError(400, "prompt must be a string or a list of strings")
        n = get(body, "n", int, 1)
        if n < 1 or n * len(prompts) > cfg.max_n:
            raise HTTPError(400, f"n × prompts = {n * len(prompts)} is outside 1..{cfg.max_n} (this server's cap)")
        for name in ("logprobs", "suffix"):
            if body.get(name) is not None:
                raise HTTPError(400, f"{name} is not supported by this server")
        best_of = get(body, "best_of", int)
        if best_of is not None and best_of != n:
            raise HTTPError(400, "best_of is not supported by this server (leave it out or equal to n)")
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop)):
            raise HTTPError(400, "stop must be a non-empty string or a list of them")
        extra: dict[str, Any] = {"max_tokens": get(body, "max_tokens", int, 16)}
        for name in ("temperature", "top_p"):
            if body.get(name) is not None:
                extra[name] = get(body, name, float)
        if stop:
            extra["stop"] = stop
        echo = bool(get(body, "echo", bool, False))
        stream = bool(get(body, "stream", bool, False))
        seed = seed_of(body)
        cid = f"cmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, list[TextDelta] | None]] = asyncio.Queue()
        collected: list[tuple[int, list[TextDelta] | None]] = []  # without streaming: filled by the worker
        jobs = []
        for p, prompt in enumerate(prompts):
            opts = sample_options(served, body, {**extra, "prompt": prompt})

            def sink(ds: list[TextDelta] | None, p: int = p) -> None:
                if stream:  # one hop to the event loop per step, not per piece
                    loop.call_soon_threadsafe(queue.put_nowait, (p, ds))
                else:
                    collected.append((p, ds))

            jobs.append(served.submit_text(n, seed=None if seed is None else seed + p, options=opts, sink=sink))

        def choice(p: int, d: TextDelta) -> dict[str, Any]:
            text = d.text
            return {"text": text, "index": p * n + d.index, "logprobs": None, "finish_reason": d.finish}

        if stream:
            async def events() -> Any:
                ended = 0
                deadline = time.monotonic() + cfg.timeout
                try:
                    if echo:
                        for p, prompt in enumerate(prompts):
                            for i in range(n):
                                chunk = {"id": cid, "object": "text_completion", "created": created,
                                         "model": served.name, "choices": [{"text": prompt, "index": p * n + i,
                                                                            "logprobs": None,
                                                                            "finish_reason": None}]}
                                yield f"data: {json.dumps(chunk)}\n\n"
                    while ended < len(jobs):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            err = HTTPError(504, f"the request took longer than {cfg.timeout:.0f} s", "timeout_error")
                            yield f"data: {json.dumps(err.body())}\n\n"
                            return
                        try:
                            p, ds = await asyncio.wait_for(queue.get(), left)
                        except TimeoutError:
                            continue
                        if ds is None:
                            ended += 1
                            continue
                        for d in ds:
                            if not d.text and d.finish is None:
                                continue
                            chunk = {"id": cid, "object": "text_completion", "created": created,
                                     "model": served.name, "choices": [choice(p, d)]}
                            yield f"data: {json.dumps(chunk)}\n\n"
                    for job in jobs:
                        exc = job.future.exception() if job.future.done() else None
                        if exc is not None:
                            yield f"data: {json.dumps(to_http(exc).body())}\n\n"
                            return
                    yield "data: [DONE]\n\n"
                finally:  # the client went away (or the stream ended): stop generating
                    for job in jobs:
                        job.cancel()

            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        results = []
        for job in jobs:
            results.append(await wait_job(request, job, cfg.timeout))
        texts: dict[int, list[str]] = {}
        finish: dict[int, str | None] = {}
        tokens = 0
        for p, ds in collected:
            for d in ds or ():
                k = p * n + d.index
                texts.setdefault(k, []).append(d.text)
                tokens += d.tokens
                if d.finish:
                    finish[k] = d.finish
        choices = []
        for p, prompt in enumerate(prompts):
            for i in range(n):
                k = p * n + i
                choices.append({"text": (prompt if echo else "") + "".join(texts.get(k, [])), "index": k,
                                "logprobs": None, "finish_reason": finish.get(k, "length")})
        prompt_tokens = sum(r["prompt_tokens"] for r in results) * n
        return JSONResponse({"id": cid, "object": "text_completion", "created": created, "model": served.name,
                             "choices": choices, "system_fingerprint": f"seed-{results[0]['seed']}",
                             "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                                       "total_tokens": prompt_tokens + tokens}})

    # -- latent interpolation, inpainting ----------------------------------------------------------------
    @app.post("/v1/interpolate")
    async def interpolate(request: Request) -> Response:
        body = await read_json(request)
        served = state.run(body.get("model"))
        if not served.can_interpolate:
            raise HTTPError(400, f"model {served.name} ({served.run.family}) has no latent space to interpolate in")
        seeds = body.get("seeds") or [fresh_seed(), fresh_seed()]
        if not (isinstance(seeds, list) and len(seeds) == 2 and all(isinstance(s, int) and not isinstance(s, bool)
                                                                    and 0 <= s < 2**63 for s in seeds)):
            raise HTTPError(400, "seeds must be two integers in 0..2**63-1")
        steps = get(body, "steps", int, 9)
        if not 2 <= steps <= max(cfg.max_n, 2) * 4:
            raise HTTPError(400, f"steps must be in 2..{max(cfg.max_n, 2) * 4}, got {steps}")
        label = served.label(body.get("label"))
        opts = sample_options(served, body)
        job = served.submit_call(lambda: served.interpolate((seeds[0], seeds[1]), steps, label, opts))
        frames = await wait_job(request, job, cfg.timeout)
        whole = await run_in_threadpool(served.render, frames)
        items = await run_in_threadpool(lambda: [served.render(frames[i : i + 1]) for i in range(len(frames))])
        return JSONResponse({"model": served.name, "seeds": seeds, "label": label, "steps": steps,
                             "rendering": whole.to_json(), "frames": [it.to_json() for it in items]})

    @app.post("/v1/inpaint")
    async def inpaint(request: Request) -> Response:
        body = await read_json(request)
        served = state.run(body.get("model"))
        if not served.can_inpaint:
            raise HTTPError(400, f"model {served.name} ({served.run.family} on {served.modality.kind} data) cannot "
                            "inpaint")
        sid = get(body, "sample_id", str)
        if sid is None:
            raise HTTPError(400, "give sample_id, a sample this server served (from /v1/samples)")
        source, src_label = served.recall(sid)
        mask_b64 = get(body, "mask", str)
        box = get(body, "box", str)
        if (mask_b64 is None) == (box is None):
            raise HTTPError(400, "give exactly one of mask (base64 PNG, white = fill) or box 'x0,y0,x1,y1'")
        mask = None
        if mask_b64 is not None:
            try:
                mask = base64.b64decode(mask_b64.split(",", 1)[-1], validate=True)
            except (binascii.Error, ValueError):
                raise HTTPError(400, "mask is not valid base64") from None
        label = served.label(body.get("label")) if body.get("label") is not None else src_label
        seed = seed_of(body)
        seed = fresh_seed() if seed is None else seed
        opts = sample_options(served, body)
        job = served.submit_call(lambda: served.inpaint(source, mask, box, label, seed, opts))
        xs, ms, filled = await wait_job(request, job, cfg.timeout)
        batch = SampleBatch(filled, None if label is None else torch.tensor([label]), seed, 1)
        served.remember(batch)
        shown = xs.clone()
        shown[ms] = 128 if shown.dtype == torch.uint8 else 0  # the hole, as the CLI writes it
        out = await run_in_threadpool(served.render, filled)
        hole = await run_in_threadpool(served.render, shown)
        return JSONResponse({"model": served.name, "seed": seed, "sample_id": batch.ids[0],
                             "rendering": out.to_json(), "masked": hole.to_json(),
                             "filled_share": float(ms.float().mean())})

    # -- drift ----------------------------------------------------------------------------------------
    @app.get("/v1/drift")
    async def drift() -> dict[str, Any]:
        return {"models": {name: s.monitor.snapshot() if s.monitor is not None else {"state": "off"}
                           for name, s in state.runs.items()}}


def _page_file(name: str) -> Any:
    data = resources.files("genlab.serve").joinpath("page", name).read_bytes()
    return Response(data, media_type=PAGE_FILES[name], headers={"Cache-Control": "no-cache"})


def _default_image_model(state: ServerState) -> str:
    images = [n for n, s in state.runs.items() if s.item_mime.startswith("image/")]
    if len(images) == 1:
        return images[0]
    raise HTTPError(400, f"give model, one of: {', '.join(images) or 'none (no run renders images)'}")


def _prompt_label(served: ServedRun, prompt: str) -> int | None:
    """An image prompt as a class label: a class name (or index), or empty for any class."""
    prompt = prompt.strip()
    if not prompt or prompt == "*":
        return None
    if not served.conditional:
        raise HTTPError(400, f"model {served.name} is unconditional and takes no prompt; send an empty prompt")
    try:
        return served.label(prompt)
    except ConfigError:
        raise HTTPError(400, f"prompt {prompt!r} is not a class of model {served.name}; use one of: "
                        f"{', '.join(served.run.spec.class_names)}") from None


