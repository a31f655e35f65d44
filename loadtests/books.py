"""The books after a load day: the faults' checks (libs/immunreg/books.py) and the day's own.

The faults' checks cover registrations, doses and scheduling runs in their owners, on
Kafka (every stored event published exactly once) and downstream (booking,
administration, certificates, inventory's consumption, projections equal to a
rebuild). The day adds:
- every appointment a site read as booked is one AppointmentBooked in booking, and in
  the projections' read model;
- the recall: a dose given from the recalled lot before it holds a revoked certificate,
  unless corrected to another lot, when a valid one superseded it;
- the projections' totals: doses per day add up to the accepted doses, and coverage
  (dose 1) counts every citizen with an accepted dose 1;
- every freshness probe became visible.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from immunreg.books import Books, Ledger, certificate_heads, check_books
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.paths import keys_dir

from .scenario import Day


@dataclass
class Balance:
    """What the books found: counts of what was checked and every discrepancy."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.problems


def read_ledger(folder: Path) -> list[dict[str, Any]]:
    """Every line of every ledger of the run (the eve's and each generator's)."""
    lines: list[dict[str, Any]] = []
    for path in sorted(folder.glob("ledger-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return lines


async def check(
    folder: Path, *, urls: dict[str, str], env: dict[str, str], schemas: dict[str, str], day: Day
) -> Balance:
    """Every check; a Balance listing each discrepancy."""
    lines = read_ledger(folder)
    ledger = Ledger([w for w in lines if w["kind"] != "end"])
    found: Books = await check_books(ledger, urls=urls, keys=keys_dir(), env=env, schemas=schemas)
    balance = Balance(problems=list(found.problems))
    balance.counts["writes accepted"] = found.accepted
    balance.counts["found once where they belong"] = found.found
    for kind in (
        "registration",
        "dose",
        "scheduling_run",
        "allocation_run",
        "correction",
        "recall",
    ):
        balance.counts[f"{kind} accepted"] = len(ledger.accepted(kind))
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        model = await conn.fetchval(
            f"SELECT schema_name FROM {schemas['projections']}.read_models WHERE status = 'active'"
        )
        await _appointments(conn, lines, schemas["booking"], str(model), balance)
        await _recall(conn, ledger, schemas["certificates"], day, balance)
        await _allocation(conn, lines, ledger, schemas["supply"], balance)
    finally:
        await conn.close()
    _totals(urls["projections"], ledger, balance)
    probes = [w for w in lines if w["kind"] == "freshness"]
    balance.counts["freshness probes"] = len(probes)
    lost = [p["id"] for p in probes if p["seconds"] is None]
    if lost:
        balance.problems.append(f"{len(lost)} probe doses never showed in coverage: {lost[:5]}")
    return balance


async def _appointments(
    conn: asyncpg.Connection, lines: list[dict[str, Any]], booking: str, model: str, b: Balance
) -> None:
    booked = sorted({w["id"] for w in lines if w["kind"] == "booking"})
    b.counts["appointments read as booked"] = len(booked)
    rows = await conn.fetch(
        f"SELECT stream_id, count(*) AS n FROM {booking}.events "
        "WHERE type = 'AppointmentBooked' AND stream_id = ANY($1) GROUP BY stream_id",
        [f"appointment-{a}" for a in booked],
    )
    events = Counter({r["stream_id"]: r["n"] for r in rows})
    twice_or_none = [a for a in booked if events[f"appointment-{a}"] != 1]
    if twice_or_none:
        b.problems.append(f"{len(twice_or_none)} appointments not booked exactly once in booking")
    seen = {
        r["appointment_id"]
        for r in await conn.fetch(
            f"SELECT appointment_id FROM {model}.appointments WHERE appointment_id = ANY($1)",
            booked,
        )
    }
    if missing := set(booked) - seen:
        b.problems.append(f"projections misses {len(missing)} appointments")


async def _allocation(
    conn: asyncpg.Connection, lines: list[dict[str, Any]], ledger: Ledger, supply: str, b: Balance
) -> None:
    """Each accepted allocation run was requested once in supply and was planned."""
    runs = [w["id"] for w in ledger.accepted("allocation_run")]
    rows = await conn.fetch(
        f"SELECT stream_id, count(*) AS n FROM {supply}.events "
        "WHERE type = 'AllocationRunRequested' AND stream_id = ANY($1) GROUP BY stream_id",
        [f"allocation-run-{r}" for r in runs],
    )
    events = Counter({r["stream_id"]: r["n"] for r in rows})
    if twice_or_none := [r for r in runs if events[f"allocation-run-{r}"] != 1]:
        b.problems.append(f"{len(twice_or_none)} allocation runs not requested exactly once")
    planned = {w["id"] for w in lines if w["kind"] == "allocation_planned"}
    proposed = {
        w["id"] for w in lines if w["kind"] == "allocation_planned" and w["outcome"] == "proposed"
    }
    b.counts["allocation runs proposed"] = len(proposed)
    if unplanned := set(runs) - proposed:
        b.problems.append(
            f"{len(unplanned)} allocation runs never proposed "
            f"({len(set(runs) - planned)} not followed): {sorted(unplanned)[:5]}"
        )


async def _recall(
    conn: asyncpg.Connection, ledger: Ledger, certificates: str, day: Day, b: Balance
) -> None:
    if not ledger.accepted("recall"):
        b.problems.append(f"the recall of {day.recalled_lot} was not accepted")
        return
    corrected = {w["id"] for w in ledger.accepted("correction")}
    from_lot = [w["id"] for w in ledger.accepted("dose") if w.get("lot") == day.recalled_lot]
    heads = {r["dose_id"]: r for r in await certificate_heads(conn, certificates, from_lot)}
    b.counts["doses from the recalled lot"] = len(from_lot)
    b.counts["of them corrected to another lot"] = len(corrected & set(from_lot))
    wrong = []
    for dose in from_lot:
        head = heads.get(dose)
        if dose in corrected:
            ok = head is not None and head["status"] == "valid" and head["supersedes"]
        else:
            # None: the recall came before the certificate, which was then never issued.
            ok = head is None or (
                head["status"] == "revoked" and head["revocation_reason"] == "lot_recalled"
            )
        if not ok:
            wrong.append(dose)
    if wrong:
        b.problems.append(
            f"{len(wrong)} recalled-lot doses with the wrong certificate: {wrong[:5]}"
        )


def _totals(projections: str, ledger: Ledger, b: Balance) -> None:
    private, _ = ensure_dev_keys(keys_dir())
    token = issue_token(private.read_bytes(), Role.PUBLIC_HEALTH)

    def read(path: str) -> Any:
        request = urllib.request.Request(
            projections + path, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    doses = ledger.accepted("dose")
    daily = read("/v1/doses/daily")
    if daily["total"] != len(doses):
        b.problems.append(f"doses per day add up to {daily['total']}, accepted {len(doses)}")
    first = {w["key"] for w in doses if w.get("dose_number") == 1}
    coverage = read("/v1/coverage?group_by=district&dose=1")
    people = coverage["total"]["people"]
    if people != len(first):
        b.problems.append(f"coverage counts {people} with dose 1, accepted {len(first)}")
    b.counts["doses in projections"] = daily["total"]
    b.counts["dose-1 people in coverage"] = people
