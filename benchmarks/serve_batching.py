"""Micro-batching: throughput of 8 concurrent clients with and without batching, and their p95 latency against a
lone request (goals: ≥ 2× the throughput, p95 ≤ 1.5× a lone request), over loopback HTTP to `genlab serve`.

    python benchmarks/serve_batching.py --clients 8 --requests 20 --rounds 2

Each mode runs in its own server process (`--no-batching` for the baseline); lone-request latency is measured in
the same server before the concurrent load, and the modes alternate for ``--rounds`` rounds. Workloads: image
samples from a small diffusion model (10 DPM-Solver++ steps, one sample per request) and text completions from a
small GPT (32 tokens, the same prompt, no seed; the batching server decodes them with iteration-level batching, a
request joining the running generation at its next token). The lone request is measured on both servers.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

from _common import print_table, write_results
from _serve import Server, load, small_run

WORKLOADS: dict[str, dict[str, Any]] = {
    "diffusion image": {"path": "/v1/samples",
                        "body": {"model": "diffusion", "n": 1, "raw": True, "options": {"steps": 10}}},
    "gpt completion": {"path": "/v1/completions", "body": {"model": "gpt", "prompt": "The ", "max_tokens": 32}},
}


def request_fn(path: str, body: dict[str, Any]) -> Any:
    async def send(client: Any, c: int, k: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        r = await client.post(path, json=body)
        return r.status_code, time.perf_counter() - t0

    return send


def model_cost(runs: list[str], threads: int, reps: int = 5) -> dict[str, float]:
    """In-process seconds of one model call drawing 8 samples over one drawing 1 (no HTTP), on the server's
    ``threads``: the floor of the latency of a batched request relative to a lone one."""
    import torch

    import genlab

    torch.set_num_threads(threads)

    out = {}
    paths = dict(r.split("=", 1) for r in runs)
    for name, w in WORKLOADS.items():
        run = genlab.load(paths[w["body"]["model"]], device="cpu")
        opts = genlab.api.sample_options(run.model, {**w["body"].get("options", {}),
                                                     **({"prompt": "The ", "max_tokens": 32}
                                                        if "prompt" in w["body"] else {})})

        text = "prompt" in w["body"]

        def call(n: int, run: Any = run, opts: dict = opts, text: bool = text) -> float:
            t0 = time.perf_counter()
            if text:
                ts = run.modality.stream_texts(run, n, seed=0, options=opts)
                for _ in ts.steps:
                    pass
            else:
                genlab.sample(run, n, seed=0, **opts)
            return time.perf_counter() - t0

        call(1)
        one = sorted(call(1) for _ in range(reps))[reps // 2]
        eight = sorted(call(8) for _ in range(reps))[reps // 2]
        out[name] = eight / one
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=20, help="requests per client")
    ap.add_argument("--lone", type=int, default=20, help="sequential requests of the lone client")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="the server's --threads (default: its own default, the cores less one)")
    args = ap.parse_args()
    from genlab.serve.config import model_threads

    threads = model_threads(args.threads)
    runs = [f"diffusion={small_run('diffusion', 'diffusion', 'digits', max_steps=30, model_channels=32)}",
            f"gpt={small_run('gpt', 'gpt', 'lee', max_steps=30, block_size=64, n_layer=2, n_embd=64)}"]
    cost = model_cost(runs, threads)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {w: {"batched": [], "unbatched": []} for w in WORKLOADS}
    for rnd in range(args.rounds):
        for mode in (["batched", "unbatched"] if rnd % 2 == 0 else ["unbatched", "batched"]):
            with tempfile.TemporaryDirectory() as tmp:
                flags = ["--db", f"{tmp}/r.sqlite", "--drift-window", "0", "--gold-rate", "0", "--queue-size", "64",
                         "--log-level", "warning"]
                srv = Server(runs, *flags, *([] if mode == "batched" else ["--no-batching"]), threads=args.threads)
                try:
                    for name, w in WORKLOADS.items():
                        send = request_fn(w["path"], w["body"])
                        asyncio.run(load(1, 3, send, srv.url))  # warm-up
                        lone = asyncio.run(load(1, args.lone, send, srv.url))
                        many = asyncio.run(load(args.clients, args.requests, send, srv.url))
                        results[name][mode].append({"lone": lone, "many": many})
                finally:
                    srv.stop()
    rows = []
    for name, modes in results.items():
        def med(mode: str, part: str, key: str, modes: dict = modes) -> float:
            vals = sorted(r[part][key] for r in modes[mode])
            return vals[len(vals) // 2]

        lone = med("batched", "lone", "p50_s")
        tb, tu = med("batched", "many", "ok_rps"), med("unbatched", "many", "ok_rps")
        p95 = med("batched", "many", "p95_s")
        rows.append({"workload": name, "lone_p50_ms": 1000 * lone, "unbatched_rps": tu, "batched_rps": tb,
                     "speedup": tb / tu, f"p95_{args.clients}_clients_ms": 1000 * p95, "p95_vs_lone": p95 / lone,
                     "unbatched_p95_ms": 1000 * med("unbatched", "many", "p95_s"),
                     "unbatched_lone_p50_ms": 1000 * med("unbatched", "lone", "p50_s"),
                     "p95_vs_unbatched_lone": p95 / med("unbatched", "lone", "p50_s"),
                     "model_call_8_vs_1": cost[name],
                     "goal_2x": tb / tu >= 2, "goal_p95_1.5x": p95 / lone <= 1.5})
    print_table(f"micro-batching, {args.clients} clients × {args.requests} requests, {threads} model thread(s)",
                rows)
    path = write_results("serve_batching", {"rows": rows, "raw": results, "args": vars(args),
                                            "model_threads": threads})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
