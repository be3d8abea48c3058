"""A bounded loopback load test of `genlab serve`: concurrent clients × requests over mixed routes; the server may
only answer 200, 429 or 503; no vote is lost or counted twice (a third of the votes are retried with the same
idempotency key); the server's memory stays bounded; p50/p95 latency and throughput.

    python benchmarks/serve_load.py --clients 50 --requests 20 --queue-size 8

Routes, in turn per client: image samples (vae, n=4), a text completion (gpt, 16 tokens), the model list, an arena
pair followed by a vote, diffusion samples (5 steps). The server runs in its own process on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import threading
import time
from typing import Any

from _common import print_table, write_results
from _serve import Server, load, small_run

ALLOWED = {200, 429, 503}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20, help="requests per client")
    ap.add_argument("--queue-size", type=int, default=8)
    args = ap.parse_args()
    runs = [f"vae={small_run('vae', 'vae', 'digits', max_steps=100)}",
            f"diffusion={small_run('diffusion', 'diffusion', 'digits', max_steps=30, model_channels=32)}",
            f"gpt={small_run('gpt', 'gpt', 'lee', max_steps=30, block_size=64, n_layer=2, n_embd=64)}"]
    votes_ok: set[str] = set()
    vote_answers: list[int] = []
    per_route: dict[str, list[int]] = {}
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/ratings.sqlite"
        srv = Server(runs, "--db", db, "--queue-size", str(args.queue_size), "--drift-window", "100",
                     "--gold-rate", "0.1", "--timeout", "30", "--log-level", "warning")
        peak = [0.0]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], srv.rss_mb())
                time.sleep(0.2)

        try:
            rss_start = srv.rss_mb()
            threading.Thread(target=watch, daemon=True).start()

            async def send(client: Any, c: int, k: int) -> tuple[int, float]:
                route = (c + k) % 5
                t0 = time.perf_counter()
                if route == 0:
                    r = await client.post("/v1/samples", json={"model": "vae", "n": 4, "raw": True})
                elif route == 1:
                    r = await client.post("/v1/completions", json={"model": "gpt", "prompt": "The ",
                                                                   "max_tokens": 16})
                elif route == 2:
                    r = await client.get("/v1/models")
                elif route == 3:
                    r = await client.post("/v1/arena/pair", json={"rater": f"load-{c}"})
                    if r.status_code == 200:
                        key = f"load-{c}-{k}"
                        body = {"pair_id": r.json()["pair_id"], "choice": rng.choice(["a", "b", "tie", "both_bad"]),
                                "rater": f"load-{c}", "idempotency_key": key, "decision_ms": 1000}
                        for _ in range(2 if rng.random() < 1 / 3 else 1):  # retries reuse the key
                            v = await client.post("/v1/arena/vote", json=body)
                            vote_answers.append(v.status_code)
                            if v.status_code == 200:
                                votes_ok.add(key)
                else:
                    r = await client.post("/v1/samples", json={"model": "diffusion", "n": 2, "raw": True,
                                                               "options": {"steps": 5}})
                per_route.setdefault(["samples vae", "completions", "models", "arena", "samples diffusion"][route],
                                     []).append(r.status_code)
                return r.status_code, time.perf_counter() - t0

            res = asyncio.run(load(args.clients, args.requests, send, srv.url, timeout=60))
            stop.set()
            rss_end = srv.rss_mb()
            # a second, identical wave: memory must not keep growing with the number of requests served
            res2 = asyncio.run(load(args.clients, args.requests, send, srv.url, timeout=60))
            rss_end2 = srv.rss_mb()
        finally:
            stop.set()
            srv.stop()
        from genlab.serve.store import Store

        store = Store(db)
        stored = store.all_votes()
        store.close()
    keys_stored = len(stored)
    statuses = {**{k: 0 for k in ("200", "429", "503")}, **res["statuses"]}
    bad = {s: n for s, n in {**res["statuses"], **res2["statuses"]}.items() if int(s) not in ALLOWED}
    row = {"clients": args.clients, "requests": res["requests"] + res2["requests"], "wall_s": res["wall_s"],
           "throughput_rps": res["throughput_rps"], "ok_rps": res["ok_rps"], "p50_ms": 1000 * res["p50_s"],
           "p95_ms": 1000 * res["p95_s"], "200": statuses["200"], "429": statuses["429"], "503": statuses["503"],
           "other_statuses": bad or "none", "votes_acknowledged": len(votes_ok), "votes_stored": keys_stored,
           "votes_lost": len(votes_ok) - keys_stored if keys_stored <= len(votes_ok) else 0,
           "votes_double": max(0, keys_stored - len(votes_ok)), "rss_start_mb": rss_start,
           "rss_after_wave1_mb": rss_end, "rss_after_wave2_mb": rss_end2, "rss_peak_mb": peak[0]}
    routes = [{"route": k, **{str(s): v.count(s) for s in sorted(set(v))}} for k, v in per_route.items()]
    print_table("loopback load test", [row])
    print_table("answers per route (both waves)", routes)
    print(f"wrote {write_results('serve_load', {'result': row, 'routes': routes, 'wave2': res2, 'args': vars(args)})}")


if __name__ == "__main__":
    main()
