"""Batch sizes of micro-batching: the gpt completion workload of ``serve_batching.py`` (8 clients × 16 requests,
after a lone client's 20), batched and unbatched, with the server's ``genlab_batch_requests`` histogram from
``/metrics`` — how many requests each model call served.

    python benchmarks/serve_batch_sizes.py [--batch-wait 0.03]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from typing import Any

import httpx

from _common import print_table, write_results
from _serve import Server, load, small_run
from serve_batching import WORKLOADS, request_fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-wait", type=float, default=None, help="the server's --batch-wait (default: its own)")
    args = ap.parse_args()
    gpt = small_run("gpt", "gpt", "lee", max_steps=30, block_size=64, n_layer=2, n_embd=64)
    w = WORKLOADS["gpt completion"]
    rows: list[dict[str, Any]] = []
    for mode in ("batched", "unbatched"):
        with tempfile.TemporaryDirectory() as tmp:
            flags = ["--db", f"{tmp}/r.sqlite", "--drift-window", "0", "--gold-rate", "0", "--queue-size", "64",
                     "--log-level", "warning", *([] if mode == "batched" else ["--no-batching"]),
                     *([] if args.batch_wait is None else ["--batch-wait", str(args.batch_wait)])]
            srv = Server([f"gpt={gpt}"], *flags)
            try:
                send = request_fn(w["path"], w["body"])
                asyncio.run(load(1, 3, send, srv.url))  # warm-up
                lone = asyncio.run(load(1, 20, send, srv.url))
                many = asyncio.run(load(8, 16, send, srv.url))
                buckets = {}
                for line in httpx.get(srv.url + "/metrics").text.splitlines():
                    if line.startswith("genlab_batch_requests_bucket"):
                        buckets[line.split('le="')[1].split('"')[0]] = float(line.split()[-1])
            finally:
                srv.stop()
        rows.append({"mode": mode, "lone_p50_ms": 1000 * lone["p50_s"], "rps_8_clients": many["ok_rps"],
                     "p95_8_clients_ms": 1000 * many["p95_s"], "calls_total": buckets.get("+Inf"),
                     "calls_le_1": buckets.get("1.0"), "calls_le_4": buckets.get("4.0"),
                     "calls_le_8": buckets.get("8.0")})
    rows[0]["speedup"] = rows[0]["rps_8_clients"] / rows[1]["rps_8_clients"]
    print_table("requests per model call (calls include the 23 lone and warm-up requests)", rows)
    print(f"wrote {write_results('serve_batch_sizes', {'rows': rows, 'args': vars(args)})}")


if __name__ == "__main__":
    main()
