"""Registration and doses over HTTP at fixed rates, each service its own process, the load
from a process of its own: where each path stops keeping up on this machine.

Run with `.venv/bin/python -m bench.http_rates [--quick]` (or `make bench`). With
`--event-loops uvloop,asyncio,asyncio,uvloop` the whole run is repeated on a fresh stack
per entry, its services on that event loop (immunreg.eventloop), and each loop's mean
is recorded under "http_rates_event_loops" beside the other's.

Every service runs as in production (`IsolatedStack`: own processes, schemas, topics).
A separate generator process (`python -m bench.http_rates --drive ...`) sends open
loop (loadtests/traffic.py: latency from each request's intended moment), one fixed
rate after another, `GET /healthz` on every service beside it as the same-run
baseline:

1. registrations: `POST /v1/citizens` at each rate (stops after the first rate that is
   not kept up: under 90% achieved, or p99 over a second);
2. doses, end to end: lots received at ten sites, then `POST /v1/doses` for the citizens
   just registered, at each rate, with freshness probes (one tagged dose at a time,
   from its 201 until `GET /v1/coverage` counts it), then the time until the
   projections count every accepted dose.

Figures go to bench/results.json under "http_rates"; a summary is printed. Targets
(docs/capacity.md): registrations >= 1,500/s; doses >= 1,000/s with HTTP p99 <= 100 ms
and freshness p99 <= 2 s. Reported as met or missed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import percentile, progress
from bench.results import postgres_version, record
from bench.stack import fresh_stack
from immunreg import localinfra
from immunreg.demo import wait_until_quiet
from immunreg.eventloop import EVENT_LOOPS, event_loop_setting
from immunreg.http.auth import Role, ensure_dev_keys
from immunreg.paths import REPO_ROOT, keys_dir
from immunreg.reference.calendar import today
from immunreg.reference.vaccines import vaccine_catalog
from loadtests.day import DayRun, Patient, Shard, freshness_probes, record_dose, register
from loadtests.scenario import PROBE_PRODUCT, Census, Day, Lot, Site
from loadtests.traffic import Traffic
from loadtests.watch import Watch, cpu_between, server_groups

SECTION = "http_rates"
# `--event-loops`: the same rounds with the services on each event loop in turn.
LOOPS_SECTION = "http_rates_event_loops"
# Beside the load test's ports (and like them below the outgoing connections' range).
DEFAULT_PORT_BASE = 26280
SITES = [f"SITE-R{n:03d}" for n in range(10)]
PROBE_SITE = "SITE-RPROBE"
FLOOR_PER_S = 5.0
TARGETS = {"registration_per_s": 1500, "doses_per_s": 1000, "p99_ms": 100, "freshness_p99_s": 2}


def _day(probes: int, vials: int) -> Day:
    """The little world the doses need: ten sites with a lot each, and probe citizens."""
    day = Day(scale=0.0, seed=7, seconds=0.0)
    census = Census(random.Random(7))
    day.probe_municipality = min(census.places, key=lambda m: m.population).code
    day.probe_site = PROBE_SITE
    day.sites = [Site(s, "70092", {PROBE_PRODUCT: 1000}) for s in [*SITES, PROBE_SITE]]
    day.lots = [Lot(f"RLOT-{s[-3:]}", PROBE_PRODUCT, vials, ((s, vials),)) for s in SITES]
    day.lots.append(Lot("RLOT-PROBE", PROBE_PRODUCT, vials, ((PROBE_SITE, vials),)))
    day.probes = [(0.0, census.person(day.probe_municipality)) for _ in range(probes)]
    return day


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    """In the generator process: each rate in turn, open loop; figures per rate."""
    urls = json.loads(args.urls)
    rates = [float(r) for r in args.rates.split(",")]
    folder = Path(args.folder)
    ledger = folder / ("ledger-doses.jsonl" if args.doses else "ledger-registrations.jsonl")
    traffic = await Traffic.open(urls, ledger, time.time())
    day = _day(probes=int(args.seconds * len(rates) / 2) + 2, vials=10_000)
    run = DayRun(day, Shard(), traffic, today())
    run.citizens = json.loads((folder / "citizens.json").read_text()) if args.doses else {}
    census = Census(random.Random(args.seed), excluded=day.probe_municipality)
    pending = [
        c for n, c in run.citizens.items() if n not in {p.national_id for _, p in day.probes}
    ]
    if not args.doses:  # the probes' citizens first: the dose phase measures freshness with them
        for _, person in day.probes:
            citizen = await register(run, person, traffic.now())
            if citizen is None:
                raise RuntimeError("could not register a probe citizen")
            run.citizens[person.national_id] = citizen
    figures: list[dict[str, Any]] = []
    for rate in rates:
        start = traffic.now() + 0.5
        moments = [start + n / rate for n in range(int(rate * args.seconds))]
        floor = [start + n / FLOOR_PER_S for n in range(int(FLOOR_PER_S * args.seconds))]

        async def registration(moment: float, _: int) -> None:
            person = census.person()
            citizen = await register(run, person, moment)
            if citizen:
                run.citizens[person.national_id] = citizen

        async def dose(moment: float, index: int) -> None:
            if not pending:
                return
            patient = Patient(pending.pop(), SITES[index % len(SITES)], PROBE_PRODUCT, 1)
            await record_dose(run, patient, moment, turn=index)

        async def healthz(moment: float, index: int) -> None:
            service = sorted(urls)[index % len(urls)]
            await traffic.request(
                "GET", service, "/healthz", endpoint="floor /healthz", intended=moment
            )

        traffic.ledger.write(json.dumps({"kind": "rate", "rate": rate, "start": start}) + "\n")
        work = dose if args.doses else registration
        steps = [traffic.schedule(moments, work), traffic.schedule(floor, healthz)]
        if args.doses:
            probing = replace_probes(day, start, args.seconds)
            steps.append(
                freshness_probes(DayRun(probing, Shard(), traffic, run.today, run.citizens))
            )
        await asyncio.gather(*steps)
        while traffic.tasks:
            await asyncio.gather(*list(traffic.tasks), return_exceptions=True)
        traffic.ledger.flush()
        one = _rate_figures(ledger, rate, start, args.seconds, traffic.t0)
        figures.append(one)
        progress(f"{'doses' if args.doses else 'registrations'} at {rate:g}/s: {one}")
        if one["achieved_per_s"] < 0.9 * rate or one["p99_ms"] > 1000:
            break
    await traffic.close()
    if not args.doses:
        (folder / "citizens.json").write_text(json.dumps(run.citizens))
    return {"rates": figures}


def replace_probes(day: Day, start: float, seconds: float) -> Day:
    """The day's probes that fall within this rate's window, at 3 s spacing."""
    count = max(1, int(seconds / 3))
    taken = day.probes[:count]
    day.probes = day.probes[count:]
    spaced = [(start + 1 + n * seconds / count, p) for n, (_, p) in enumerate(taken)]
    return replace(day, probes=spaced)


def _rate_figures(
    ledger: Path, rate: float, start: float, seconds: float, origin: float
) -> dict[str, Any]:
    lines = [json.loads(x) for x in ledger.read_text().splitlines() if x]
    window = [w for w in lines if "endpoint" in w and start <= w["intended"] < start + seconds]
    # The freshness probes' doses (at their own site) are not part of the rate.
    work = [
        w for w in window if w["kind"] in ("registration", "dose") and w.get("site") != PROBE_SITE
    ]
    floor = [w for w in window if w["endpoint"].startswith("floor")]
    ok = [w for w in work if w["status"] is not None and 200 <= w["status"] < 300]
    latency = sorted(w["done"] - w["intended"] for w in ok)
    floor_latency = sorted(w["done"] - w["intended"] for w in floor if w["status"] == 200)
    fresh = sorted(
        w["seconds"]
        for w in lines
        if w["kind"] == "freshness" and w["seconds"] is not None and w["recorded"] >= start
    )
    end = max((w["done"] for w in ok), default=start + seconds)
    return {
        "target_per_s": rate,
        "achieved_per_s": round(len(ok) / max(end - start, seconds), 1),
        "not_2xx": dict(Counter(w["cause"] for w in work if w not in ok)),
        "window_epoch": [round(origin + start, 3), round(origin + start + seconds, 3)],
        "p50_ms": round(1000 * percentile(latency, 50), 1),
        "p99_ms": round(1000 * percentile(latency, 99), 1),
        "floor_p99_ms": round(1000 * percentile(floor_latency, 99), 1),
        "freshness_p99_s": round(percentile(fresh, 99), 3) if fresh else None,
    }


def _step_costs(achieved_per_s: float, system_cpu: float, services_cpu: float) -> dict[str, Any]:
    """A step's CPU figures from its achieved rate and the mean CPU (% of one core) of the
    whole system and of the services alone over its window. A step where nothing was
    achieved (the drive stops after it) has no cost per request: None, not a crash."""
    return {
        "system_cpu_pct": round(system_cpu, 1),
        "per_core_per_s": round(achieved_per_s / (system_cpu / 100), 1) if system_cpu else None,
        "services_cpu_ms_per_request": (
            round(10 * services_cpu / achieved_per_s, 1) if achieved_per_s else None
        ),
    }


def _generator(
    urls: dict[str, str], folder: Path, rates: str, seconds: float, doses: bool
) -> dict[str, Any]:
    out = folder / ("doses.json" if doses else "registrations.json")
    command = [
        sys.executable, "-m", "bench.http_rates", "--drive", f"--urls={json.dumps(urls)}",
        f"--folder={folder}", f"--rates={rates}", f"--seconds={seconds}", f"--out={out}",
    ] + (["--doses"] if doses else [])  # fmt: skip
    subprocess.run(command, cwd=REPO_ROOT, check=True, timeout=1800)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


async def _stock(urls: dict[str, str], folder: Path, vials: int) -> None:
    """A lot received at each site (inventory tells administration it is there)."""
    traffic = await Traffic.open(urls, folder / "setup.jsonl", time.time())
    product = vaccine_catalog()[PROBE_PRODUCT]
    for site in [*SITES, PROBE_SITE]:
        answer = await traffic.request(
            "POST", "inventory", "/v1/lots", endpoint="POST /v1/lots", intended=traffic.now(),
            kind="setup", headers=traffic.headers(Role.ADMIN),
            body={
                "lot_number": f"RLOT-{site[-3:] if site != PROBE_SITE else 'PROBE'}",
                "product_code": PROBE_PRODUCT, "manufacturer_code": product.manufacturer_code,
                "expiry_date": (date.today() + timedelta(days=90)).isoformat(),
                "vials": vials, "doses_per_vial": product.doses_per_vial,
                "storage": product.storage, "location_id": site,
            },
        )  # fmt: skip
        if answer.status != 201:
            raise RuntimeError(f"inventory refused a lot: {answer.status} {answer.body}")
    await traffic.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_rates")
    parser.add_argument("--quick", action="store_true", help="two low rates, 4 s each")
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--doses", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--rates", default="25,50,100,200,400,800,1600", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=6.0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=11, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument(
        "--event-loops",
        help="whole rounds with the services on these loops in turn, e.g. "
        "uvloop,asyncio,asyncio,uvloop (to bench/results.json under http_rates_event_loops)",
    )
    args = parser.parse_args(argv)
    if args.drive:
        Path(args.out).write_text(json.dumps(asyncio.run(drive(args))))
        return 0
    rates, seconds = ("20,40", 4.0) if args.quick else (args.rates, args.seconds)
    endpoints = localinfra.up()
    ensure_dev_keys(keys_dir())
    postgres = postgres_version(endpoints["DATABASE_URL"])
    if args.event_loops:
        return _compare_loops(endpoints, rates, seconds, args.event_loops.split(","), postgres)
    figures = _round(endpoints, rates, seconds, event_loop_setting())
    record(SECTION, figures, postgres=postgres)
    print(
        f"registrations: best {figures['best_registrations_per_s']:,.0f}/s "
        f"(target {TARGETS['registration_per_s']:,}); "
        f"doses: best {figures['best_doses_per_s']:,.0f}/s (target {TARGETS['doses_per_s']:,}); "
        f"drained: {figures['drained_after_doses']}"
    )
    return 0 if figures["drained_after_doses"] else 1


def _round(endpoints: dict[str, str], rates: str, seconds: float, loop: str) -> dict[str, Any]:
    """One whole run on a fresh stack whose services serve on `loop`: registrations at
    each rate, then doses at each rate and the time until the projections drain."""
    port = ("RATES_PORT_BASE", DEFAULT_PORT_BASE)
    with fresh_stack(endpoints, "rates", *port, env={"IMMUNREG_EVENT_LOOP": loop}) as (stack, _):
        groups = {p.name: [p.process.pid] for p in stack.processes} | server_groups()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            with (folder / "samples.jsonl").open("w") as out:
                watch = Watch(out, stack.urls, groups, {"postgresql"}, interval=1.0, t0=0.0)
                watch.start()
                try:
                    progress(f"[{loop}] registrations at {rates} per s, {seconds:g} s each")
                    registrations = _generator(stack.urls, folder, rates, seconds, doses=False)
                    progress(f"[{loop}] stock at the sites; waiting for every consumer")
                    asyncio.run(_stock(stack.urls, folder, vials=20_000))
                    wait_until_quiet(stack.urls, 300)
                    progress(f"[{loop}] doses at {rates} per s, {seconds:g} s each")
                    started = time.monotonic()
                    doses = _generator(stack.urls, folder, rates, seconds, doses=True)
                    drained = wait_until_quiet(stack.urls, 300)
                    pipeline_seconds = round(time.monotonic() - started, 1)
                finally:
                    watch.stop()
            samples = [json.loads(x) for x in (folder / "samples.jsonl").read_text().splitlines()]
        # The services' own processes: what their event loop changes, without the servers.
        python = [
            {**s, "processes": {k: v for k, v in s["processes"].items() if k in stack.urls}}
            for s in samples
        ]
        for result in (registrations, doses):
            for one in result["rates"]:
                # Every process of the system (services, PostgreSQL, Kafka), not the generator.
                system = cpu_between(samples, *one["window_epoch"])
                services = cpu_between(python, *one["window_epoch"])
                one.update(_step_costs(one["achieved_per_s"], system, services))
    best = {
        name: max((r["achieved_per_s"] for r in result["rates"]), default=0.0)
        for name, result in (("registration", registrations), ("doses", doses))
    }
    return {
        "event_loop": loop,
        "seconds_per_rate": seconds,
        "registrations": registrations["rates"],
        "doses": doses["rates"],
        "drained_after_doses": drained,
        "dose_phase_seconds_until_drained": pipeline_seconds,
        "best_registrations_per_s": best["registration"],
        "best_doses_per_s": best["doses"],
        "targets": TARGETS,
    }


def _compare_loops(
    endpoints: dict[str, str], rates: str, seconds: float, loops: list[str], postgres: str
) -> int:
    """Whole rounds, one per entry of `loops` in that order (alternate them, e.g.
    uvloop,asyncio,asyncio,uvloop, so drift on a shared machine falls on both);
    each loop's figures are the mean over its rounds, the baseline the other's."""
    for loop in loops:
        if loop not in EVENT_LOOPS:
            raise SystemExit(f"--event-loops: {loop!r} is not one of {', '.join(EVENT_LOOPS)}")
    rounds = [_round(endpoints, rates, seconds, loop) for loop in loops]
    by_loop = {
        loop: _mean_of_rounds([r for r in rounds if r["event_loop"] == loop])
        for loop in dict.fromkeys(loops)
    }
    record(
        LOOPS_SECTION,
        {"order": loops, "seconds_per_rate": seconds, "by_loop": by_loop, "rounds": rounds},
        postgres=postgres,
    )
    for loop, figures in by_loop.items():
        print(f"{loop}: {figures}")
    return 0 if all(r["drained_after_doses"] for r in rounds) else 1


def _mean_of_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per loop: the best rate's figures of each round, averaged over its rounds."""

    def best(rates: list[dict[str, Any]]) -> dict[str, Any]:
        return max(rates, key=lambda r: r["achieved_per_s"])

    def mean(values: list[float | None]) -> float | None:
        # A step with nothing achieved has no cost per request (None): left out of the mean.
        measured = [v for v in values if v is not None]
        return round(sum(measured) / len(measured), 1) if measured else None

    figures: dict[str, Any] = {"rounds": len(rounds)}
    keys = (
        "achieved_per_s",
        "p50_ms",
        "p99_ms",
        "per_core_per_s",
        "system_cpu_pct",
        "services_cpu_ms_per_request",
    )
    for kind in ("registrations", "doses"):
        bests = [best(r[kind]) for r in rounds]
        for key in keys:
            figures[f"{kind}_{key}"] = mean([b[key] for b in bests])
        figures[f"{kind}_per_round"] = [b["achieved_per_s"] for b in bests]
        # The same load on both loops: each rate every round reached, averaged.
        reached = set.intersection(*({one["target_per_s"] for one in r[kind]} for r in rounds))
        figures[f"{kind}_at_rate"] = {
            f"{rate:g}": {
                key: mean([o[key] for r in rounds for o in r[kind] if o["target_per_s"] == rate])
                for key in keys
            }
            for rate in sorted(reached)
        }
    figures["dose_phase_seconds_until_drained"] = mean(
        [r["dose_phase_seconds_until_drained"] for r in rounds]
    )
    return figures


if __name__ == "__main__":
    sys.exit(main())
