"""`make load`: the national-day mix against an isolated stack on 127.0.0.1.

Starts registration, projections and supply (own ports and schemas), runs Locust
headless for a bounded time and number of users, writes the figures to
bench/results.json (section `load_national_day`), stops and cleans up.

    python -m loadtests.national_day [--users 40] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.results import record
from immunreg import localinfra
from immunreg.config import local_port
from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.localinfra.services import IsolatedStack
from immunreg.messaging.topics import delete_namespace
from immunreg.paths import REPO_ROOT, keys_dir

SERVICES = ["registration", "projections", "supply"]
# Moved, like every local port, by IMMUNREG_PORT_OFFSET (a second checkout's load test).
DEFAULT_PORT_BASE = 27080


def _figures(stats_csv: Path) -> dict[str, dict[str, float]]:
    rows = {}
    with stats_csv.open() as handle:
        for row in csv.DictReader(handle):
            rows[row["Name"]] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "requests_per_s": round(float(row["Requests/s"]), 1),
                "p50_ms": float(row["50%"]),
                "p95_ms": float(row["95%"]),
                "p99_ms": float(row["99%"]),
                "max_ms": round(float(row["Max Response Time"]), 1),
            }
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.national_day")
    parser.add_argument("--users", type=int, default=50, help="concurrent simulated users")
    parser.add_argument("--seconds", type=int, default=60, help="how long the load runs")
    args = parser.parse_args(argv)

    run = f"load_{uuid.uuid4().hex[:8]}"
    # Topics of its own, so the load never reaches `make run`'s services (nor theirs it).
    os.environ[TOPIC_NAMESPACE_VARIABLE] = f"{run}."
    # Every simulated member of the public comes from 127.0.0.1, one address: the
    # per-address limit of the public routes would measure itself, not the service.
    os.environ["RATE_LIMIT_PER_MINUTE"] = "6000000"
    os.environ["RATE_LIMIT_BURST"] = "100000"
    endpoints = localinfra.up()
    private, _ = ensure_dev_keys(keys_dir())
    token = issue_token(private.read_bytes(), Role.ADMIN, subject="load-test")
    port_base = local_port("LOAD_PORT_BASE", DEFAULT_PORT_BASE)
    stack = IsolatedStack.start(endpoints, SERVICES, port_base, run)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prefix = Path(tmp) / "stats"
            env = {
                "LOAD_TOKEN": token,
                "LOAD_REGISTRATION_URL": stack.urls["registration"],
                "LOAD_PROJECTIONS_URL": stack.urls["projections"],
                "LOAD_SUPPLY_URL": stack.urls["supply"],
            }
            command = [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(REPO_ROOT / "loadtests" / "locustfile.py"),
                "--headless",
                "--only-summary",
                "-u",
                str(args.users),
                "-r",
                str(max(args.users // 5, 1)),
                "--run-time",
                f"{args.seconds}s",
                "--stop-timeout",
                "5",
                "--csv",
                str(prefix),
            ]
            subprocess.run(
                command,
                cwd=REPO_ROOT,
                env={**os.environ, **env},
                check=False,
                timeout=args.seconds + 120,
            )
            figures = _figures(Path(f"{prefix}_stats.csv"))
    finally:
        stack.stop()
        asyncio.run(delete_namespace(endpoints["KAFKA_BOOTSTRAP_SERVERS"], f"{run}."))
    total = figures.get("Aggregated", {})
    record(
        "load_national_day",
        {
            "users": args.users,
            "seconds": args.seconds,
            "requests": figures,
        },
    )
    print(
        f"load: {total.get('requests_per_s')} requests/s, p99 {total.get('p99_ms')} ms, "
        f"{total.get('failures')} failures (bench/results.json: load_national_day)"
    )
    return 0 if total.get("failures", 1) == 0 and total.get("requests", 0) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
