"""The end of `make bench`: every headline figure beside its same-run baseline and its target.

The machine is shared and noisy (the same benchmark can differ 2x between days), so a
figure alone says little; its baseline was measured in the same run on the same machine
(pgbench beside the event store, a bare Kafka producer beside the relay, `/healthz`
beside each HTTP route, the `eventsourcing` library beside our store...). Targets are the
performance issue's (docs/BENCHMARKS.md). Printed, and written to bench/summary.md
(ignored by git, like results.json: the numbers belong to the machine).

    .venv/bin/python -m bench.summary      # again, from the last bench/results.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.results import RESULTS

SUMMARY = RESULTS.with_name("summary.md")


@dataclass(frozen=True)
class Row:
    """One line of the table: what, and how to read its figure and baseline."""

    what: str
    figure: Callable[[dict[str, Any]], str]
    baseline: Callable[[dict[str, Any]], str]
    target: str


def at(results: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (list items by index), or None when not measured."""
    value: Any = results
    for part in path.split("."):
        if isinstance(value, list) and part.lstrip("-").isdigit() and value:
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def number(value: Any, unit: str = "") -> str:
    if value is None:
        return "not measured"
    return f"{value:,.0f}{unit}" if abs(value) >= 100 else f"{value:g}{unit}"


def _best(rates: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if not rates:
        return None
    return max(rates, key=lambda r: r.get("achieved_per_s") or 0)


def _http(kind: str) -> tuple[Callable[[dict[str, Any]], str], Callable[[dict[str, Any]], str]]:
    def figure(r: dict[str, Any]) -> str:
        best = _best(at(r, f"http_rates.{kind}"))
        if best is None:
            return "not measured"
        text = f"{number(best['achieved_per_s'], '/s')}, p99 {number(best['p99_ms'], ' ms')}"
        if best.get("freshness_p99_s") is not None:
            text += f", freshness p99 {best['freshness_p99_s']} s"
        return text

    def baseline(r: dict[str, Any]) -> str:
        best = _best(at(r, f"http_rates.{kind}"))
        if best is None:
            return "not measured"
        return f"`/healthz` p99 {number(best['floor_p99_ms'], ' ms')} at that rate"

    return figure, baseline


def _coverage(results: dict[str, Any], path: str) -> str:
    """A p99 from bench.coverage, with the number of citizens it was measured on."""
    p99 = at(results, f"coverage.{path}.p99_ms")
    if p99 is None:
        return "not measured"
    return f"{number(p99, ' ms')} ({number(at(results, 'coverage.citizens'))} citizens)"


def _idle(r: dict[str, Any], part: str) -> str:
    """Idle CPU of the whole stack per relay poll interval (`bench.idle_cpu`)."""
    rounds = at(r, "idle_cpu.rounds")
    if not rounds:
        return "not measured"
    shown = []
    for one in rounds:
        cpu = one["cpu_pct_of_one_core"]
        if part == "services":
            value = number(one["services_total_cpu_pct"], "%")
        else:
            postgresql, kafka = number(cpu.get("postgresql"), "%"), number(cpu.get("kafka"), "%")
            value = f"PostgreSQL {postgresql}, Kafka {kafka}"
        shown.append(f"poll {one['relay_poll_interval_s']:g} s: {value}")
    return "; ".join(shown)


def _floor(r: dict[str, Any], kind: str) -> str:
    """The CPU floor of a registration or dose and what it allows (`bench.floor`)."""
    floor = at(r, f"floor.floor.{kind}")
    if floor is None:
        return "not measured"
    return (
        f"{number(floor['floor_ms'], ' ms')} of CPU: {number(floor['per_core_second'], '/s')} "
        f"per core; the target needs {number(floor['cores_at_floor'])} cores at the floor"
    )


_NATIONAL = "booking_scheduling_national"


def _national_run(r: dict[str, Any]) -> str:
    """The 1,000,000-waiting run (bench.scheduling_national): its seconds, what it
    booked, its phases and the API's p99 meanwhile."""
    seconds = at(r, f"{_NATIONAL}.seconds")
    if seconds is None:
        return "not measured"
    timings = at(r, f"{_NATIONAL}.timings") or {}
    phases = " / ".join(number(timings.get(p), " s") for p in ("load", "plan", "commit"))
    consistent = "" if at(r, f"{_NATIONAL}.consistent") else ", INCONSISTENT"
    return (
        f"{number(seconds, ' s')}: {number(at(r, f'{_NATIONAL}.booked'))} of "
        f"{number(at(r, f'{_NATIONAL}.citizens'))} waiting booked (load / plan / commit "
        f"{phases}), API p99 {number(at(r, f'{_NATIONAL}.api_during_run.p99_ms'), ' ms')}"
        f"{consistent}"
    )


def _scheduling_floor(r: dict[str, Any], part: str) -> str:
    """A national run at the floor (`bench.floor --scheduling`): its least wall and
    verdict, or its commit's floor and budget."""
    n = at(r, "floor.scheduling.national")
    if n is None:
        return "not measured"
    if part == "commit":
        return (
            f"commit floor {number(n['commit_floor_us_per_booking'], ' us')}/booking; budget "
            f"{number(n['commit_budget_us_per_booking_sequential'], ' us')} after the plan, "
            f"{number(n['commit_budget_us_per_booking_overlapped'], ' us')} beside it"
        )
    return (
        f"least {number(n['least_wall_seconds_sequential'], ' s')} with the commit after the "
        f"plan, {number(n['least_wall_seconds_overlapped'], ' s')} beside it "
        f"({number(n['core_seconds_needed'])} of {number(n['core_seconds_available'])} "
        f"core-seconds): {n['verdict']}"
    )


ROWS = (
    Row(
        "event-store append, 8 writers (appends/s)",
        lambda r: number(at(r, "foundation.eventstore_append.writers_8.appends_per_s")),
        lambda r: f"pgbench 2-row tx {number(at(r, 'foundation.pgbench_raw_insert.two_rows.tps'))}",
        "(none; ratio to pgbench)",
    ),
    Row(
        "our event store vs the eventsourcing library (appends/s)",
        lambda r: number(at(r, "eventsourcing_compare.ours.appends_per_s")),
        lambda r: (
            f"eventsourcing {number(at(r, 'eventsourcing_compare.eventsourcing.appends_per_s'))}"
        ),
        "(none)",
    ),
    Row(
        "outbox relay, batch 2,000 (events/s)",
        lambda r: number(at(r, "foundation.relay.batch_2000.events_per_s")),
        lambda r: (
            "bare transactional producer "
            + number(at(r, "foundation.kafka_producer_baseline.transactional.msgs_per_s"))
        ),
        "(none; ratio to the producer)",
    ),
    Row("registration over HTTP", *_http("registrations"), ">= 1,500/s, p99 <= 100 ms"),
    Row(
        "dose recording, HTTP 201 to coverage",
        *_http("doses"),
        ">= 1,000/s, p99 <= 100 ms, freshness p99 <= 2 s",
    ),
    Row(
        "coverage query, any filter and past date (p99)",
        lambda r: _coverage(r, "queries.all.model"),
        lambda r: "old scan of citizens " + _coverage(r, "queries.all.scan"),
        "p99 <= 50 ms on 6.6 M citizens",
    ),
    Row(
        "dashboard load, 12 requests at once (p99)",
        lambda r: _coverage(r, "dashboard.model"),
        lambda r: "coverage by the old scan " + _coverage(r, "dashboard.scan"),
        "<= 500 ms",
    ),
    Row(
        "scheduling: 1,000,000 waiting citizens, pure planner (s)",
        lambda r: number(at(r, "booking_scheduler.seconds"), " s"),
        lambda r: (
            f"generating the input {number(at(r, 'booking_scheduler.generate_seconds'), ' s')}"
        ),
        "booked and committed in <= 60 s through the service",
    ),
    Row(
        "scheduling run through the service, background (booked/s)",
        lambda r: (
            f"{number(at(r, 'booking_scheduling_run.booked_per_second'), '/s')}: "
            f"{number(at(r, 'booking_scheduling_run.booked'))} of "
            f"{number(at(r, 'booking_scheduling_run.citizens'))} waiting in "
            f"{number(at(r, 'booking_scheduling_run.seconds'), ' s')}, API p99 "
            f"{number(at(r, 'booking_scheduling_run.api_during_run.p99_ms'), ' ms')}"
        ),
        lambda r: (
            "pure planner on the same input "
            f"{number(at(r, 'booking_scheduling_run.baseline_pure_planner.plan_seconds'), ' s')}"
        ),
        "1,000,000 booked and committed in <= 60 s",
    ),
    Row(
        "scheduling run of 1,000,000 waiting through the service, background (s)",
        _national_run,
        lambda r: (
            "pure planner on the same input "
            f"{number(at(r, f'{_NATIONAL}.baseline_pure_planner.plan_seconds'), ' s')}, its load "
            f"{number(at(r, f'{_NATIONAL}.baseline_pure_planner.load_seconds'), ' s')}"
        ),
        "booked and committed in <= 60 s, the API answering",
    ),
    Row(
        "projection rebuild (events/s)",
        lambda r: number(at(r, "projections.replay.events_per_s")),
        lambda r: (
            "producing the history "
            + number(at(r, "projections.produce.events_per_s"))
            + " events/s"
        ),
        ">= 30,000 events/s",
    ),
    Row(
        "certificate QR image: stored qr.png downloads over HTTP (/s)",
        lambda r: number(at(r, "certificates.downloads.stored.per_second")),
        lambda r: (
            "rendered on the request (before) "
            + number(at(r, "certificates.downloads.rendered_on_request.per_second"))
            + "/s; JSON record (floor) "
            + number(at(r, "certificates.downloads.certificate_json.per_second"))
            + "/s; render alone "
            + number(at(r, "certificates.qr_png.per_second"))
            + " PNG/s one core"
        ),
        ">= 1,000/s or rendered once and cached",
    ),
    Row(
        "national allocation run, 400 sites x 5 products x 14 days (s)",
        lambda r: number(at(r, "supply_allocation.seconds"), " s"),
        lambda r: (
            "booked demand covered "
            + (
                f"{at(r, 'supply_allocation.booked_share_covered'):.0%}"
                if at(r, "supply_allocation.booked_share_covered") is not None
                else "not measured"
            )
        ),
        "(none)",
    ),
    Row(
        "floor: CPU of one registration's irreducible parts (HTTP, a transaction, an event "
        "read by 7 groups, the generator)",
        lambda r: _floor(r, "registration"),
        lambda r: _floor(r, "dose") + " (dose: the same plus a certificate signed and rendered)",
        "(none; what 1,500/s and 1,000/s need at the least)",
    ),
    Row(
        "floor: a 1,000,000-waiting scheduling run (load, plan, and a commit writing only "
        "the contract's rows, relayed)",
        lambda r: _scheduling_floor(r, "run"),
        lambda r: _scheduling_floor(r, "commit"),
        "1,000,000 booked and committed in <= 60 s",
    ),
    Row(
        "idle CPU, every service summed, no load (% of one core)",
        lambda r: _idle(r, "services"),
        lambda r: _idle(r, "servers"),
        "(none; the smaller the better)",
    ),
)


def table(results: dict[str, Any]) -> str:
    """The summary table in Markdown."""
    lines = [
        "| what | this run | same-run baseline | target |",
        "|---|---|---|---|",
    ]
    for row in ROWS:
        lines.append(
            f"| {row.what} | {row.figure(results)} | {row.baseline(results)} | {row.target} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Print the table of the last results and write it to bench/summary.md."""
    if not RESULTS.exists():
        print("no bench/results.json yet: run `make bench`", file=sys.stderr)
        return 1
    text = table(json.loads(RESULTS.read_text()))
    SUMMARY.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
