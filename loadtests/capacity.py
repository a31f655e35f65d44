"""How many requests per second one load-generator process sustains, open loop, here.

    python -m loadtests.capacity [--rates 250,500,1000,2000] [--seconds 10]

A bare aiohttp server (`GET /ping`, no work) runs in a process of its own; the
generator's `Traffic.schedule` sends to it at each fixed rate in turn. A rate is
sustained while the requests leave on time: the lateness (sent minus intended) p99
stays small and the achieved rate matches the target. Figures go to
bench/results.json under `load_generator_capacity` and are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import percentile
from bench.results import record

from .traffic import Traffic


def serve(port: int) -> None:
    """The target: answers `GET /ping` with 200 and nothing else."""

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="pong")

    app = web.Application()
    app.router.add_get("/ping", ping)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpu_seconds() -> float:
    return sum(os.times()[:2])


async def measure(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Send at `rate` for `seconds`; achieved rate, lateness and latency, CPU used."""
    with tempfile.TemporaryDirectory() as folder:
        ledger = Path(folder) / "ledger.jsonl"
        traffic = await Traffic.open({"target": url}, ledger, time.time() + 0.5)
        cpu = _cpu_seconds()

        async def ping(moment: float, _: int) -> None:
            await traffic.request("GET", "target", "/ping", endpoint="ping", intended=moment)

        moments = [n / rate for n in range(int(rate * seconds))]
        await traffic.schedule(moments, ping)
        await traffic.close()
        cpu = _cpu_seconds() - cpu
        rows = [json.loads(x) for x in ledger.read_text().splitlines()]
    requests = [r for r in rows if r["kind"] == "read"]
    ok = [r for r in requests if r["status"] == 200]
    late = sorted(r["sent"] - r["intended"] for r in requests)
    latency = sorted(r["done"] - r["intended"] for r in ok)
    span = max(r["done"] for r in requests) - min(r["intended"] for r in requests)
    return {
        "target_per_s": rate,
        "achieved_per_s": round(len(ok) / span, 1),
        "failed": len(requests) - len(ok),
        "lateness_p99_ms": round(1000 * percentile(late, 99), 1),
        "latency_p50_ms": round(1000 * percentile(latency, 50), 1),
        "latency_p99_ms": round(1000 * percentile(latency, 99), 1),
        "generator_cpu_pct": round(100 * cpu / span, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.capacity")
    parser.add_argument("--rates", default="250,500,1000,2000")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", f"from loadtests.capacity import serve; serve({port})"],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        results = [
            asyncio.run(measure(url, float(rate), args.seconds)) for rate in args.rates.split(",")
        ]
    finally:
        server.terminate()
        server.wait(10)
    for r in results:
        print(
            f"target {r['target_per_s']:>6.0f}/s: achieved {r['achieved_per_s']:>7.1f}/s, "
            f"lateness p99 {r['lateness_p99_ms']} ms, latency p50 {r['latency_p50_ms']} ms "
            f"p99 {r['latency_p99_ms']} ms, generator CPU {r['generator_cpu_pct']}%"
        )
    record("load_generator_capacity", {"seconds": args.seconds, "rates": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
