"""The arena: two anonymous samples side by side (sides randomised and stored), a vote A / B / tie / both bad
stored once per idempotency key, gold pairs that check raters' attention, and the leaderboard."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from genlab.serve.app import ServerState, read_json, wait_job
from genlab.serve.errors import HTTPError
from genlab.serve.ranking import leaderboard
from genlab.serve.runs import Rendering, SampleBatch, ServedRun, fresh_seed
from genlab.serve.store import CHOICES


def comparable(state: ServerState, names: list[str] | None = None) -> list[list[ServedRun]]:
    """Groups of served runs whose samples can be compared side by side (same kind of data, same rendering)."""
    groups: dict[tuple[str, str], list[ServedRun]] = {}
    for s in state.runs.values():
        if names is None or s.name in names:
            groups.setdefault((s.modality.kind, s.item_mime), []).append(s)
    return [g for g in groups.values() if len(g) >= 2]


def shared_options(runs: list[ServedRun], rng: Any, prompt: str | None) -> tuple[int | None, dict[str, Any]]:
    """What both sides are drawn with: one class label when both are conditional on the same classes, one prompt
    when both take prompts; otherwise each model's defaults."""
    label = None
    a, b = runs
    if a.conditional and b.conditional and a.run.spec.class_names == b.run.spec.class_names:
        label = rng.randrange(a.run.spec.num_classes)
    opts: dict[str, Any] = {}
    if prompt and all("prompt" in {o["name"] for o in r.info()["options"]} for r in runs):
        opts["prompt"] = prompt
    return label, opts


def add_routes(app: Any, state: ServerState) -> None:
    """Register the arena and leaderboard routes on ``app``."""

    cfg, store = state.cfg, state.store

    @app.post("/v1/arena/pair")
    async def pair(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        rater = str(body.get("rater") or "anonymous")[:100]
        names = body.get("models")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise HTTPError(400, "models must be a list of model names")
        for n in names or []:
            state.run(n)
        groups = comparable(state, names)
        if not groups:
            raise HTTPError(400, "the arena needs two served runs of the same kind of data; serve more runs")
        with state.rng_lock:
            group = state.rng.choice(groups)
            gold_runs = [s for s in group if s.gold_pool is not None]
            gold = bool(gold_runs) and state.rng.random() < cfg.gold_rate
            swap = state.rng.random() < 0.5
            picked = state.rng.sample(group, 2)
            label, opts = shared_options(picked, state.rng, body.get("prompt") if isinstance(body.get("prompt"),
                                                                                             str) else None)
            source = state.rng.choice(gold_runs) if gold else None
            gold_items = source.gold_pair(state.rng) if source is not None else None
        if gold_items is not None and source is not None:
            real, broken = gold_items
            r_real, r_broken = await run_in_threadpool(lambda: (source.render(real), source.render(broken)))
            left, right = (r_broken, r_real) if swap else (r_real, r_broken)
            ids = await run_in_threadpool(lambda: [
                store.add_sample(source="corrupted" if (i == 0) == swap else "real", run=None, seed=None,
                                 label=None, options={"gold_from": source.name}, mime=r.mime, content=r.data)
                for i, r in enumerate((left, right))])
            pid = await run_in_threadpool(lambda: store.add_pair(ids[0], ids[1], left_run=None, right_run=None,
                                                                 gold=True, gold_answer="b" if swap else "a",
                                                                 rater=rater))
            return _answer(pid, ids, (left, right))
        if swap:
            picked = picked[::-1]
        seeds = [fresh_seed(), fresh_seed()]
        jobs = [s.submit_samples(1, label=label, seed=seed, options=opts) for s, seed in zip(picked, seeds,
                                                                                             strict=True)]
        try:
            batches: list[SampleBatch] = list(await asyncio.gather(*(wait_job(request, j, cfg.timeout)
                                                                      for j in jobs)))
        finally:
            for j in jobs:
                if not j.future.done():
                    j.cancel()
        renders = await run_in_threadpool(lambda: [s.render(b.x) for s, b in zip(picked, batches, strict=True)])
        ids = await run_in_threadpool(lambda: [
            store.add_sample(source="model", run=s.name, seed=b.seed, label=label, options={**s.options(opts)},
                             mime=r.mime, content=r.data)
            for s, b, r in zip(picked, batches, renders, strict=True)])
        pid = await run_in_threadpool(lambda: store.add_pair(ids[0], ids[1], left_run=picked[0].name,
                                                             right_run=picked[1].name, rater=rater))
        return _answer(pid, ids, (renders[0], renders[1]))

    @app.post("/v1/arena/vote")
    async def vote(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        pair_id = body.get("pair_id")
        if not isinstance(pair_id, str) or not pair_id:
            raise HTTPError(400, "missing field 'pair_id'")
        choice = body.get("choice")
        if choice not in CHOICES:
            raise HTTPError(400, f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        key = request.headers.get("idempotency-key") or body.get("idempotency_key")
        if not isinstance(key, str) or not 8 <= len(key) <= 100:
            raise HTTPError(400, "give an idempotency_key (8 to 100 characters, e.g. a UUID) so a retry is not "
                            "counted twice")
        rater = body.get("rater") or "anonymous"
        if not isinstance(rater, str) or len(rater) > 100:
            raise HTTPError(400, "rater must be a pseudonym of at most 100 characters")
        ms = body.get("decision_ms")
        if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0):
            raise HTTPError(400, "decision_ms must be a non-negative number")
        v = await run_in_threadpool(lambda: store.vote(pair_id, choice, rater=rater, key=key,
                                                       decision_ms=None if ms is None else int(ms)))
        if not v.duplicate:
            state.metrics.votes.inc()
        p = await run_in_threadpool(store.pair, pair_id)
        return {"vote_id": v.id, "duplicate": v.duplicate, "pair_id": pair_id, "choice": v.choice,
                "revealed": {"a": p["left_run"] or ("real" if p["gold_answer"] == "a" else "corrupted"),
                             "b": p["right_run"] or ("real" if p["gold_answer"] == "b" else "corrupted"),
                             "gold": bool(p["gold"])}}

    @app.get("/v1/leaderboard")
    async def board(rounds: int | None = None) -> dict[str, Any]:
        r = cfg.bootstrap if rounds is None else rounds
        if not 0 <= r <= 10_000:
            raise HTTPError(400, f"rounds must be in 0..10000, got {r}")
        count = await run_in_threadpool(store.count_votes)
        cached = state.leaderboard_cache.get("value")
        if cached is not None and state.leaderboard_cache.get("key") == (count, r) \
                and time.monotonic() - state.leaderboard_cache["at"] < 30:
            return dict(cached)
        votes = await run_in_threadpool(store.all_votes)
        out = await run_in_threadpool(lambda: leaderboard(votes, rounds=r, seed=cfg.seed,
                                                          min_gold_votes=cfg.min_gold_votes,
                                                          min_gold_accuracy=cfg.min_gold_accuracy))
        state.leaderboard_cache.update(value=out, key=(count, r), at=time.monotonic())
        return out


def _answer(pid: str, ids: list[str], renders: tuple[Rendering, Rendering]) -> dict[str, Any]:
    return {"pair_id": pid, "a": {"sample_id": ids[0], "rendering": renders[0].to_json()},
            "b": {"sample_id": ids[1], "rendering": renders[1].to_json()}}
