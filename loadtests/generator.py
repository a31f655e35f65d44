"""A load-generator process: its share of the day, open loop, from a wall-clock start.

    python -m loadtests.generator --scale 0.01 --seed 2021 --seconds 600 \
        --shard 0 --of 2 --t0 <epoch> --urls '{...}' --citizens eve.json --out ledger-0.jsonl

Started by `python -m loadtests.national_day` (which runs the eve first and writes the
citizens it registered to --citizens); several run side by side, each its own process,
apart from the services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date
from pathlib import Path

from .day import DayRun, Shard, run_day
from .scenario import national_day
from .traffic import Traffic


async def main_async(args: argparse.Namespace, citizens: dict[str, str]) -> None:
    day = national_day(args.scale, args.seed, args.seconds)
    traffic = await Traffic.open(json.loads(args.urls), Path(args.out), args.t0)
    run = DayRun(day, Shard(args.shard, args.of), traffic, date.fromisoformat(args.today))
    run.citizens = citizens
    try:
        await run_day(run)
    finally:
        await traffic.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.generator")
    parser.add_argument("--scale", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--of", type=int, default=1)
    parser.add_argument("--t0", type=float, required=True, help="the day's start, epoch seconds")
    parser.add_argument("--today", required=True, help="the day's date (ISO)")
    parser.add_argument("--urls", required=True, help="JSON: service name -> base URL")
    parser.add_argument("--citizens", required=True, help="JSON: national id -> citizen id")
    parser.add_argument("--out", required=True, help="the ledger (JSONL), appended to")
    args = parser.parse_args(argv)
    asyncio.run(main_async(args, json.loads(Path(args.citizens).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
