"""The run's report: figures.json, requests.csv, PNG charts and summary.md (read first).

Latency is from each request's intended moment in the schedule to its answer (so a
stalled system shows as latency, not as a lower rate); `GET /healthz (floor)` is the
same round trip with no work behind it, measured in the same run as the baseline.
"""

from __future__ import annotations

import csv
import json
import math
import platform
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench.common import percentile

from .books import Balance, read_ledger
from .scenario import DAY_HOURS, DAY_START_HOUR, Day

FLOOR = "GET /healthz (floor)"


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        f"p{q}_ms": round(1000 * percentile(ordered, q), 1) if ordered else math.nan
        for q in (50, 95, 99)
    } | {"max_ms": round(1000 * ordered[-1], 1) if ordered else math.nan}


def endpoint_figures(requests: list[dict[str, Any]], seconds: float) -> dict[str, dict[str, Any]]:
    """Per endpoint: count, rate over the day, latency percentiles, outcomes by cause."""
    by_endpoint: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in requests:
        by_endpoint[r["endpoint"]].append(r)
    figures = {}
    for endpoint, rows in sorted(by_endpoint.items()):
        ok = [r for r in rows if r["status"] is not None and r["status"] < 300]
        causes = Counter(r["cause"] or f"HTTP {r['status']}" for r in rows if r not in ok)
        figures[endpoint] = {
            "requests": len(rows),
            "per_s": round(len(rows) / seconds, 2) if seconds else math.nan,
            "ok": len(ok),
            **_ms([r["done"] - r["intended"] for r in rows if r["status"] is not None]),
            "errors": dict(causes.most_common()),
        }
    return figures


def write(
    folder: Path,
    *,
    day: Day,
    started: datetime,
    day_seconds: float,
    eve_seconds: float,
    drain_seconds: float | None,
    drain_bound: float,
    generators: int,
    balance: Balance,
    generator_failures: int,
    profile: list[str] | None = None,
) -> dict[str, Any]:
    """Write every file of the report; return the figures (with `passed` and `verdict`)."""
    lines = read_ledger(folder)
    day_lines = [w for w in _day_ledgers(folder)]
    requests = [w for w in day_lines if "endpoint" in w]
    samples = [json.loads(x) for x in (folder / "samples.jsonl").read_text().splitlines() if x]
    endpoints = endpoint_figures(requests, day_seconds)
    fresh = [w["seconds"] for w in day_lines if w["kind"] == "freshness" and w["seconds"]]
    planning = [w["seconds"] for w in day_lines if w["kind"] == "allocation_planned"]
    scheduling = [w["seconds"] for w in day_lines if w["kind"] == "scheduling_completed"]
    server_errors = sum(1 for w in lines if (w.get("status") or 0) >= 500)
    unanswered = sum(1 for w in lines if "endpoint" in w and w["status"] is None)
    drained = drain_seconds is not None
    passed = (
        balance.balanced
        and server_errors == 0
        and unanswered == 0
        and drained
        and generator_failures == 0
    )
    verdict = (
        "PASSED: books balanced, no 5xx, nothing unanswered, drained"
        if passed
        else "FAILED: "
        + "; ".join(
            reason
            for ok, reason in (
                (balance.balanced, f"books off ({len(balance.problems)} problems)"),
                (server_errors == 0, f"{server_errors} answered 5xx"),
                (unanswered == 0, f"{unanswered} unanswered"),
                (drained, f"not drained within {drain_bound:.0f} s"),
                (generator_failures == 0, f"{generator_failures} generators failed"),
            )
            if not ok
        )
    )
    processes = _process_figures(samples)
    delivery = _delivery_figures(samples)
    figures: dict[str, Any] = {
        "passed": passed,
        "verdict": verdict,
        "started": started.isoformat(timespec="seconds"),
        "scenario": {
            "scale": day.scale,
            "seed": day.seed,
            "day_seconds_planned": day.seconds,
            "sites": len(day.sites),
            "lots": len(day.lots),
            "registrations_planned": len(day.registrations),
            "doses_planned": len(day.first_dose_times) + len(day.second_doses),
            "recalled_lot": day.recalled_lot,
        },
        "generators": generators,
        "eve_seconds": round(eve_seconds, 1),
        "day_seconds": round(day_seconds, 1),
        "drain_seconds": None if drain_seconds is None else round(drain_seconds, 1),
        "drain_bound_seconds": drain_bound,
        "endpoints": endpoints,
        "freshness": {"probes": len(fresh), **_ms(fresh)},
        "allocation_planning": {"runs": len(planning), **_ms(planning)},
        "scheduling_runs": {"runs": len(scheduling), **_ms(scheduling)},
        "delivery": delivery,
        "processes": processes,
        "books": {"balanced": balance.balanced, **balance.counts, "problems": balance.problems},
        "server_errors": server_errors,
        "unanswered": unanswered,
        "machine": {"cores": _cores(), "python": platform.python_version()},
    }
    (folder / "figures.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    _requests_csv(folder / "requests.csv", requests)
    charts = _charts(folder, requests, samples, day_lines, day)
    (folder / "summary.md").write_text(_summary(figures, charts, folder, profile or []))
    return figures


def _day_ledgers(folder: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(folder.glob("ledger-[0-9]*.jsonl")):
        lines += [json.loads(x) for x in path.read_text().splitlines() if x]
    return lines


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _process_figures(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    by_process: dict[str, list[dict[str, float]]] = defaultdict(list)
    for s in samples[1:]:  # the first sample has no CPU interval behind it
        for name, figures in s["processes"].items():
            by_process[name].append(figures)
    return {
        name: {
            "cpu_mean_pct": round(sum(r["cpu_pct"] for r in rows) / len(rows), 1),
            "cpu_max_pct": max(r["cpu_pct"] for r in rows),
            "pss_max_mb": max(r["pss_mb"] for r in rows),
        }
        for name, rows in sorted(by_process.items())
        if rows
    }


def _delivery_figures(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {}
    for s in samples:
        for service, backlog in s["delivery"].items():
            now = result.setdefault(service, {"max_consumer_lag": 0.0, "max_outbox_backlog": 0.0})
            now["max_consumer_lag"] = max(
                now["max_consumer_lag"], backlog["immunreg_consumer_lag_messages"]
            )
            now["max_outbox_backlog"] = max(
                now["max_outbox_backlog"], backlog["immunreg_outbox_backlog"]
            )
    return result


def _requests_csv(path: Path, requests: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["endpoint", "kind", "status", "cause", "intended_s", "sent_s", "done_s"])
        for r in sorted(requests, key=lambda r: r["intended"]):
            writer.writerow(
                [
                    r["endpoint"],
                    r["kind"],
                    r["status"],
                    r["cause"] or "",
                    r["intended"],
                    r["sent"],
                    r["done"],
                ]
            )


def _hour_axis(ax: Any, day: Day) -> None:
    """Label the x axis with the clock time of the compressed day."""
    ticks = list(range(0, DAY_HOURS + 1, 2))
    ax.set_xticks([day.at_hour(DAY_START_HOUR + h) for h in ticks])
    ax.set_xticklabels([f"{DAY_START_HOUR + h:02d}:00" for h in ticks])
    ax.axvline(day.recall_at, color="red", linestyle=":", linewidth=1)
    ax.grid(alpha=0.3)


def _charts(
    folder: Path,
    requests: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    day_lines: list[dict[str, Any]],
    day: Day,
) -> list[str]:
    bucket = max(day.seconds / 64, 1.0)
    made = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=90)
        plt.close(fig)
        made.append(name)

    by_endpoint: dict[str, Counter[int]] = defaultdict(Counter)
    latency: dict[int, list[float]] = defaultdict(list)
    for r in requests:
        slot = int(r["intended"] // bucket)
        by_endpoint[r["endpoint"]][slot] += 1
        if r["status"] is not None and r["endpoint"] != FLOOR:
            latency[slot].append(r["done"] - r["intended"])
    fig, ax = plt.subplots(figsize=(10, 5))
    for endpoint, counts in sorted(by_endpoint.items(), key=lambda e: -sum(e[1].values()))[:9]:
        slots = sorted(counts)
        ax.plot([s * bucket for s in slots], [counts[s] / bucket for s in slots], label=endpoint)
    ax.set_ylabel("requests/s")
    ax.set_title("Throughput per endpoint (red: the recall)")
    ax.legend(fontsize=7)
    _hour_axis(ax, day)
    save(fig, "throughput.png")

    fig, ax = plt.subplots(figsize=(10, 4))
    slots = sorted(latency)
    for q in (50, 95, 99):
        values = [1000 * percentile(sorted(latency[s]), q) for s in slots]
        ax.plot([s * bucket for s in slots], values, label=f"p{q}")
    ax.set_ylabel("ms from the intended moment")
    ax.set_yscale("log")
    ax.set_title("Latency, every endpoint but the floor")
    ax.legend()
    _hour_axis(ax, day)
    save(fig, "latency.png")

    times = [s["t"] for s in samples]
    for key, title, name in (
        ("immunreg_consumer_lag_messages", "Consumer lag (messages)", "consumer_lag.png"),
        ("immunreg_outbox_backlog", "Outbox backlog (rows)", "outbox_backlog.png"),
    ):
        fig, ax = plt.subplots(figsize=(10, 4))
        for service in sorted(samples[0]["delivery"]) if samples else []:
            ax.plot(
                times, [s["delivery"].get(service, {}).get(key, 0) for s in samples], label=service
            )
        ax.set_title(title)
        ax.legend(fontsize=7)
        _hour_axis(ax, day)
        save(fig, name)

    names = sorted({n for s in samples for n in s["processes"]})
    for key, title, name in (
        ("cpu_pct", "CPU per process (% of one core)", "cpu.png"),
        ("pss_mb", "Memory per process (PSS, MB)", "memory.png"),
    ):
        fig, ax = plt.subplots(figsize=(10, 5))
        for process in names:
            ax.plot(
                times, [s["processes"].get(process, {}).get(key) for s in samples], label=process
            )
        ax.set_title(title)
        ax.legend(fontsize=7)
        _hour_axis(ax, day)
        save(fig, name)

    probes = [w for w in day_lines if w["kind"] == "freshness" and w["seconds"] is not None]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot([p["recorded"] for p in probes], [1000 * p["seconds"] for p in probes], "o-")
    ax.set_ylabel("ms")
    ax.set_title("Event-to-coverage freshness: dose 201 -> visible in GET /v1/coverage")
    _hour_axis(ax, day)
    save(fig, "freshness.png")
    return made


def _summary(figures: dict[str, Any], charts: list[str], folder: Path, profile: list[str]) -> str:
    s = figures["scenario"]
    out = [
        f"# Load: a national day at {100 * s['scale']:g}% of Serbia",
        "",
        f"**{figures['verdict']}**",
        "",
        f"Started {figures['started']} ({folder.name}). Seed {s['seed']}; {s['sites']} sites, "
        f"{s['lots']} lots; {s['registrations_planned']} registrations and "
        f"{s['doses_planned']} doses planned; the day (06:00-22:00) in "
        f"{s['day_seconds_planned']:.0f} s of wall time ({figures['day_seconds']} s measured, "
        f"eve {figures['eve_seconds']} s before it), {figures['generators']} load-generator "
        f"process(es), open loop; {figures['machine']['cores']} cores shared by everything.",
        "",
        "## Requests (latency from the intended moment)",
        "",
        "| endpoint | requests | per s | p50 ms | p95 ms | p99 ms | max ms | not 2xx, by cause |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for endpoint, e in figures["endpoints"].items():
        errors = ", ".join(f"{c}: {n}" for c, n in e["errors"].items()) or "-"
        out.append(
            f"| {endpoint} | {e['requests']} | {e['per_s']} | {e['p50_ms']} | {e['p95_ms']} "
            f"| {e['p99_ms']} | {e['max_ms']} | {errors} |"
        )
    f = figures["freshness"]
    out += [
        "",
        f"`{FLOOR}` is the baseline: the same HTTP round trip to each service with no work "
        "behind it, in the same run.",
        "",
        "## Event-to-coverage freshness",
        "",
        f"{f['probes']} tagged doses, one at a time: from the dose's HTTP 201 to the dose "
        f"counted by `GET /v1/coverage` (polled every 50 ms): p50 {f['p50_ms']} ms, "
        f"p95 {f['p95_ms']} ms, p99 {f['p99_ms']} ms, max {f['max_ms']} ms.",
        "",
        "## Allocation runs",
        "",
        f"{figures['allocation_planning']['runs']} runs asked of supply during the day, "
        "from the request to the proposal read back (polled every 250 ms): "
        f"p50 {figures['allocation_planning'].get('p50_ms')} ms, "
        f"max {figures['allocation_planning'].get('max_ms')} ms.",
        "",
        "## Scheduling runs",
        "",
        f"{figures['scheduling_runs']['runs']} runs asked of booking during the day, "
        "from the 202 to the run read back `completed` (polled every 250 ms): "
        f"p50 {figures['scheduling_runs'].get('p50_ms')} ms, "
        f"max {figures['scheduling_runs'].get('max_ms')} ms.",
        "",
        "## Delivery",
        "",
        f"After the last request every outbox and consumer drained in "
        f"{figures['drain_seconds']} s (bound {figures['drain_bound_seconds']:.0f} s).",
        "",
        "| service | max consumer lag | max outbox backlog |",
        "|---|---:|---:|",
    ]
    for service, d in figures["delivery"].items():
        out.append(f"| {service} | {d['max_consumer_lag']:g} | {d['max_outbox_backlog']:g} |")
    out += [
        "",
        "## Processes",
        "",
        "| process | CPU mean % | CPU max % | PSS max MB |",
        "|---|---:|---:|---:|",
    ]
    for name, p in figures["processes"].items():
        out.append(f"| {name} | {p['cpu_mean_pct']} | {p['cpu_max_pct']} | {p['pss_max_mb']} |")
    b = figures["books"]
    out += ["", "## The books", ""]
    out += [f"- {k}: {v}" for k, v in b.items() if k not in ("problems", "balanced")]
    out += [f"- **problem**: {p}" for p in b["problems"][:20]] or ["- no discrepancy"]
    out += ["", *profile]
    out += ["", "## Charts", ""]
    out += [f"![{c}]({c})" for c in charts]
    out += [
        "",
        "Files: `figures.json` (every figure), `requests.csv` (every request), "
        "`samples.jsonl` (lag, backlog, CPU, memory over time), `ledger-*.jsonl` (what the "
        "clients were told), `generator-*.log`, `profile-*` (py-spy: collapsed stacks, "
        "flamegraphs, its log).",
        "",
    ]
    return "\n".join(out)
