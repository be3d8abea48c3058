"""Helpers of the serve benchmarks: small runs trained once, a `genlab serve` subprocess on a free loopback port,
bounded async load from httpx clients."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

import genlab
from _common import OUT

RUNS = OUT / "serve-runs"


def small_run(name: str, family: str, data: str, **options: Any) -> Path:
    """A run trained once into benchmarks/out/serve-runs/NAME (reused when it exists)."""
    out = RUNS / name
    if not (out / "model.safetensors").is_file():
        genlab.train(family, data, out=out, overwrite=True, quiet=True, device="cpu", eval_every=0, **options)
    return out


class Server:
    """`genlab serve` in a subprocess on 127.0.0.1 (a free port), stopped by :meth:`stop`."""

    def __init__(self, runs: list[str], *args: str, threads: int | None = None) -> None:
        # ``threads``: the server's --threads (None: its default, the cores less one)
        env = {**os.environ, "GENLAB_API_KEY": ""}
        if threads is not None:
            args = (*args, "--threads", str(threads))
        env["PYTHONPATH"] = str(Path(genlab.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "genlab.cli", "serve", *runs, "--port", "0", *args],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        assert self.proc.stderr is not None
        deadline = time.time() + 120
        self.url = ""
        self.log: list[str] = []
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError("genlab serve exited: " + "".join(self.log[-5:]))
            self.log.append(line)
            m = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
            if m:
                self.url = m.group(1)
                break
        if not self.url:
            raise RuntimeError("genlab serve did not start")
        import threading

        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def rss_mb(self) -> float:
        """Resident memory of the server process in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def load(clients: int, per_client: int, request: Callable[[Any, int, int], Awaitable[tuple[int, float]]],
               url: str, timeout: float = 120.0) -> dict[str, Any]:
    """``clients`` concurrent clients, each sending ``per_client`` requests in turn (a bounded, closed loop).

    ``request(client, c, k)`` sends one and returns (status, seconds).
    """
    import httpx

    statuses: list[int] = []
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=timeout,
                                 limits=httpx.Limits(max_connections=clients + 4)) as client:
        async def one(c: int) -> None:
            for k in range(per_client):
                status, dt = await request(client, c, k)
                statuses.append(status)
                latencies.append(dt)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(c) for c in range(clients)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies)
    ok = np.array(statuses) == 200
    return {"requests": len(statuses), "wall_s": wall, "throughput_rps": len(statuses) / wall,
            "ok_rps": float(ok.sum()) / wall, "p50_s": float(np.percentile(lat, 50)),
            "p95_s": float(np.percentile(lat, 95)), "statuses": {str(s): statuses.count(s) for s in set(statuses)}}
