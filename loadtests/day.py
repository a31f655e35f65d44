"""The day's phases, as a list of steps, and the eve that sets the day up.

`EVE` runs once, before the clock starts, as fast as the services take it (it is
set-up, not load): sites, lots shipped to them, the citizens booked for today, the
citizens back for dose 2 (their dose 1 recorded weeks back) and the freshness
probes' citizens, then a scheduling run that books today.

`DAY` runs in every load-generator process at once, each taking its share (`Shard`):
a step is one entry, `Step(name, run, everywhere)`; `run(day_run)` schedules its
requests at their moments in the day and returns once they are all started. A new
kind of traffic (an allocation run of the supply service, say) is one more entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote

from immunreg.http.auth import Role
from immunreg.reference.calendar import national_timezone
from immunreg.reference.geography import municipalities
from immunreg.reference.vaccines import vaccine_catalog

from . import scenario
from .scenario import Day, Person
from .traffic import Answer, Traffic

# How often a freshness probe looks at coverage, and how long it waits before calling the
# dose lost (the books would then fail too).
PROBE_POLL_SECONDS = 0.05
PROBE_GIVE_UP_SECONDS = 60.0
# Background runs (allocation, scheduling): how often a run's status is read, and how
# long until the generator stops waiting for it.
RUN_POLL_SECONDS = 0.25
RUN_GIVE_UP_SECONDS = 120.0
# Eve requests in flight at once.
EVE_CONCURRENCY = 16


@dataclass(frozen=True)
class Shard:
    """Generator `index` of `count`: takes the sites, people and reads whose number % count
    is its index; the steps that happen once a day (runs, the recall, probes) run in 0."""

    index: int = 0
    count: int = 1

    def mine(self, number: int) -> bool:
        return number % self.count == self.index

    @property
    def first(self) -> bool:
        return self.index == 0


@dataclass
class Patient:
    """Someone a site expects today: for which dose, of what, and an appointment if booked."""

    citizen_id: str
    site_id: str
    product_code: str
    dose_number: int
    appointment_id: str | None = None


@dataclass
class DayRun:
    """One generator's day: the scenario, its share, and what it has learnt so far."""

    day: Day
    shard: Shard
    traffic: Traffic
    today: date
    citizens: dict[str, str] = field(default_factory=dict)  # national id -> citizen id
    # Doses this generator recorded from the lot that will be recalled: (dose id, site).
    recalled_lot_doses: list[tuple[str, str, str]] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def hours(self, hours: float) -> float:
        """Seconds of compressed day in `hours` of clock time."""
        return hours / scenario.DAY_HOURS * self.day.seconds

    def lot_for(self, site_id: str, product_code: str, turn: int, *, recalled_ok: bool) -> str:
        """The lot a site takes a vial from (rotating), never the recalled one after the recall."""
        lots = self.day.lots_at(site_id, product_code)
        usable = [lot for lot in lots if recalled_ok or lot != self.day.recalled_lot]
        return usable[turn % len(usable)]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def administered_now(days_ago: int = 0) -> str:
    """An administered_at: now, or `days_ago` days back at 10:00 in the national timezone."""
    if not days_ago:
        return datetime.now(UTC).isoformat()
    day = datetime.now(national_timezone()).date() - timedelta(days=days_ago)
    return datetime.combine(day, time(10), national_timezone()).isoformat()


# --- requests the steps share ----------------------------------------------------------------


async def register(run: DayRun, person: Person, intended: float) -> str | None:
    """POST /v1/citizens; the citizen id on 201."""
    answer = await run.traffic.request(
        "POST",
        "registration",
        "/v1/citizens",
        endpoint="POST /v1/citizens",
        intended=intended,
        kind="registration",
        body=person.registration(),
        headers=run.traffic.headers(Role.ADMIN),
        key=person.national_id,
        id_from="citizen_id",
    )
    return accepted(answer, "citizen_id")


def field_of(body: Any, name: str) -> Any:
    """A field of a JSON object answer (None for anything else)."""
    return body.get(name) if isinstance(body, dict) else None


def accepted(answer: Answer, name: str) -> str | None:
    """The named field of a 2xx answer, else None."""
    if answer.status is not None and 200 <= answer.status < 300:
        value = field_of(answer.body, name)
        return str(value) if value is not None else None
    return None


async def record_dose(
    run: DayRun, patient: Patient, intended: float, *, turn: int, days_ago: int = 0
) -> str | None:
    """POST /v1/doses as the site's staff; refused for a recalled lot, once more with
    a vial of another lot (as staff told of the recall would)."""
    recall_seen = days_ago == 0 and run.traffic.now() >= run.day.recall_at
    for _ in range(2):
        lot = run.lot_for(patient.site_id, patient.product_code, turn, recalled_ok=not recall_seen)
        body = {
            "citizen_id": patient.citizen_id,
            "site_id": patient.site_id,
            "product_code": patient.product_code,
            "lot_number": lot,
            "dose_number": patient.dose_number,
            "administered_at": administered_now(days_ago),
            "vaccinator_id": f"{patient.site_id}-nurse-{turn % 4 + 1}",
            "injection_site": "left_arm",
        }
        if patient.appointment_id:
            body["appointment_id"] = patient.appointment_id
        answer = await run.traffic.request(
            "POST",
            "administration",
            "/v1/doses",
            endpoint="POST /v1/doses",
            intended=intended,
            kind="dose",
            body=body,
            headers=run.traffic.headers(Role.SITE_STAFF, site_id=patient.site_id),
            key=patient.citizen_id,
            lot=lot,
            site=patient.site_id,
            dose_number=patient.dose_number,
            id_from="dose_id",
        )
        dose_id = accepted(answer, "dose_id")
        if dose_id is not None:
            if lot == run.day.recalled_lot:
                run.recalled_lot_doses.append((dose_id, patient.site_id, patient.product_code))
            return dose_id
        if field_of(answer.body, "code") != "lot_recalled":
            return None
        recall_seen = True
    return None


# --- the eve ------------------------------------------------------------------------------


async def eve(run: DayRun) -> None:
    """Everything the day starts from, over HTTP, in the order the data flows."""
    admin = run.traffic.headers(Role.ADMIN)
    gate = asyncio.Semaphore(EVE_CONCURRENCY)

    async def each(items: list[Any], work: Callable[[Any], Awaitable[None]]) -> None:
        async def one(item: Any) -> None:
            async with gate:
                await work(item)

        await asyncio.gather(*(one(i) for i in items))

    async def define(site: scenario.Site) -> None:
        await _must(
            run.traffic.request(
                "PUT",
                "booking",
                f"/v1/sites/{site.site_id}",
                endpoint="PUT /v1/sites/{id}",
                intended=run.traffic.now(),
                kind="eve",
                body=site.definition(),
                headers=admin,
            )
        )

    async def deliver(lot: scenario.Lot) -> None:
        product = vaccine_catalog()[lot.product_code]
        expiry = (run.today + timedelta(days=120)).isoformat()
        await _must(
            _post(
                run,
                "inventory",
                "/v1/lots",
                "POST /v1/lots",
                {
                    "lot_number": lot.lot_number,
                    "product_code": lot.product_code,
                    "manufacturer_code": product.manufacturer_code,
                    "expiry_date": expiry,
                    "vials": lot.vials,
                    "doses_per_vial": product.doses_per_vial,
                    "storage": product.storage,
                },
            )
        )
        for site_id, vials in lot.shipments:
            shipment = f"S-{lot.lot_number}-{site_id}"
            body = {
                "shipment_id": shipment,
                "lot_number": lot.lot_number,
                "from_location": "WH-NATIONAL",
                "to_location": site_id,
                "vials": vials,
            }
            await _must(_post(run, "inventory", "/v1/shipments", "POST /v1/shipments", body))
            path = f"/v1/shipments/{shipment}"
            await _must(_post(run, "inventory", f"{path}/dispatch", "POST /v1/shipments/dispatch"))
            receipt = {"vials_received": vials}
            await _must(
                _post(run, "inventory", f"{path}/receive", "POST /v1/shipments/receive", receipt)
            )

    async def enrol(person: Person) -> None:
        citizen_id = await register(run, person, run.traffic.now())
        if citizen_id is None:
            raise RuntimeError(f"the eve could not register {person.national_id}")
        run.citizens[person.national_id] = citizen_id

    async def first_dose(second: scenario.SecondDose) -> None:
        patient = Patient(
            run.citizens[second.person.national_id], second.site_id, second.product_code, 1
        )
        turn = _hash(second.person.national_id)
        dose = await record_dose(
            run, patient, run.traffic.now(), turn=turn, days_ago=second.first_dose_days_ago
        )
        if dose is None:
            raise RuntimeError(f"the eve could not record dose 1 of {patient.citizen_id}")

    await each(run.day.sites, define)
    await each(run.day.lots, deliver)
    await each([*run.day.booked_for_today, *(s.person for s in run.day.second_doses)], enrol)
    await run.traffic.wait_quiet()
    await each(run.day.second_doses, first_dose)
    await run.traffic.wait_quiet()
    eve_run = await _must(scheduling_run(run, run.traffic.now(), from_day=run.today, horizon=1))
    if field_of(eve_run.body, "status") != "completed":
        raise RuntimeError(f"the eve's scheduling run did not complete: {eve_run.body}")
    # The probes' citizens after the run: booked today at some site, they would be on its
    # list, and the site would give them the dose the probe gives.
    await each([p for _, p in run.day.probes], enrol)
    await run.traffic.wait_quiet()


async def _must(pending: Awaitable[Answer]) -> Answer:
    answer = await pending
    if answer.status is None or answer.status >= 300:
        raise RuntimeError(f"the eve was refused: {answer.status} {answer.body}")
    return answer


def _post(
    run: DayRun, service: str, path: str, endpoint: str, body: Any = None
) -> Awaitable[Answer]:
    return run.traffic.request(
        "POST",
        service,
        path,
        endpoint=endpoint,
        intended=run.traffic.now(),
        kind="eve",
        body=body,
        headers=run.traffic.headers(Role.ADMIN),
    )


async def scheduling_run(
    run: DayRun, intended: float, *, from_day: date | None = None, horizon: int = 7
) -> Answer:
    """POST /v1/scheduling/runs (from tomorrow unless `from_day`), then follow the run
    until it has completed (a `scheduling_completed` line with its outcome and seconds).
    The answer is the 202's, or the last look at the run when it was accepted."""
    body: dict[str, Any] = {"horizon_days": horizon}
    if from_day is not None:
        body["from_day"] = from_day.isoformat()
    admin = run.traffic.headers(Role.ADMIN)
    answer = await run.traffic.request(
        "POST",
        "booking",
        "/v1/scheduling/runs",
        endpoint="POST /v1/scheduling/runs",
        intended=intended,
        kind="scheduling_run",
        body=body,
        headers=admin,
        id_from="run_id",
    )
    run_id = accepted(answer, "run_id")
    if run_id is None:
        return answer
    return await follow_run(
        run,
        "booking",
        f"/v1/scheduling/runs/{run_id}",
        "GET /v1/scheduling/runs/{id}",
        admin,
        pending={"queued", "running"},
        since=intended,
        note="scheduling_completed",
        answer=answer,
    )


async def follow_run(
    run: DayRun,
    service: str,
    path: str,
    endpoint: str,
    headers: dict[str, str],
    *,
    pending: set[str],
    since: float,
    note: str,
    answer: Answer,
) -> Answer:
    """Read a background run (202 + status resource) until its status leaves `pending` or
    RUN_GIVE_UP_SECONDS pass; note its outcome and how long it took; the last answer."""
    status = field_of(answer.body, "status")
    while status in pending and run.traffic.now() - since < RUN_GIVE_UP_SECONDS:
        await asyncio.sleep(RUN_POLL_SECONDS)
        answer = await run.traffic.request(
            "GET", service, path, endpoint=endpoint, intended=run.traffic.now(), headers=headers
        )
        status = field_of(answer.body, "status") or status
    run.traffic.note(
        note,
        id=field_of(answer.body, "run_id"),
        outcome=status,
        seconds=round(run.traffic.now() - since, 4),
    )
    return answer


# --- the day's steps ----------------------------------------------------------------------


async def registration_wave(run: DayRun) -> None:
    """Citizens registering, by the hour's shape (the wave's morning peak)."""
    mine = [(at, p) for n, (at, p) in enumerate(run.day.registrations) if run.shard.mine(n)]

    async def one(moment: float, index: int) -> None:
        await register(run, mine[index][1], moment)

    await run.traffic.schedule([at for at, _ in mine], one)


async def doses_at_sites(run: DayRun) -> None:
    """Sites read today's list at 07:30, then record doses by the hour's shape: those booked
    for today (dose 1) and those back for dose 2 from bookings weeks ago. A citizen who
    got a dose may fetch the certificate later, its QR image, and have it verified."""
    sites = [
        s.site_id
        for n, s in enumerate(run.day.sites)
        if run.shard.mine(n) and s.site_id != run.day.probe_site
    ]
    await asyncio.sleep(max(run.day.at_hour(7.5) - run.traffic.now(), 0.0))
    booked: list[Patient] = []
    for site_id in sites:
        booked += await todays_list(run, site_id)
    booked.sort(key=lambda p: _hash(p.citizen_id))
    times = run.day.first_dose_times[run.shard.index :: run.shard.count]
    visits = list(zip(times, booked, strict=False))
    for second in run.day.second_doses:
        if second.site_id in sites:
            citizen = run.citizens[second.person.national_id]
            visits.append((second.at, Patient(citizen, second.site_id, second.product_code, 2)))
    visits.sort(key=lambda v: v[0])

    async def visit(moment: float, index: int) -> None:
        patient = visits[index][1]
        dose_id = await record_dose(run, patient, moment, turn=index)
        chance = _hash(f"{patient.citizen_id}/{patient.dose_number}") % 1000 / 1000
        if dose_id is not None and chance < scenario.CERTIFICATE_FETCH_SHARE:
            later = run.traffic.now() + run.hours(0.5 + 1.5 * chance)
            run.traffic.at(later, lambda m: fetch_certificate(run, patient, dose_id, m, chance))

    await run.traffic.schedule([at for at, _ in visits], visit)


async def todays_list(run: DayRun, site_id: str) -> list[Patient]:
    """GET the site's appointments for today, every page; those still booked."""
    patients: list[Patient] = []
    cursor: str | None = None
    while True:
        query = f"?date={run.today.isoformat()}" + (f"&cursor={cursor}" if cursor else "")
        answer = await run.traffic.request(
            "GET",
            "booking",
            f"/v1/sites/{site_id}/appointments{query}",
            endpoint="GET /v1/sites/{id}/appointments",
            intended=run.traffic.now(),
            headers=run.traffic.headers(Role.SITE_STAFF, site_id=site_id),
        )
        for item in field_of(answer.body, "items") or []:
            if item["status"] == "booked":
                run.traffic.note("booking", id=item["appointment_id"], citizen=item["citizen_id"])
                patients.append(
                    Patient(
                        item["citizen_id"],
                        site_id,
                        item["product_code"],
                        item["dose_number"],
                        item["appointment_id"],
                    )
                )
        cursor = field_of(answer.body, "next_cursor")
        if not cursor:
            return patients


async def fetch_certificate(
    run: DayRun, patient: Patient, dose_id: str, moment: float, chance: float
) -> None:
    """The citizen fetches their certificates; then maybe the QR image; then a verifier
    checks the HC1 later."""
    citizen = run.traffic.headers(Role.CITIZEN, citizen_id=patient.citizen_id)
    answer = await run.traffic.request(
        "GET",
        "certificates",
        f"/v1/citizens/{patient.citizen_id}/certificates",
        endpoint="GET /v1/citizens/{id}/certificates",
        intended=moment,
        headers=citizen,
    )
    found = [c for c in field_of(answer.body, "certificates") or [] if c["dose_id"] == dose_id]
    if not found:
        run.traffic.note("certificate_pending", id=dose_id, at=moment)
        return
    certificate = found[0]
    if chance < scenario.CERTIFICATE_FETCH_SHARE * scenario.QR_SHARE:
        await run.traffic.request(
            "GET",
            "certificates",
            f"/v1/certificates/{quote(certificate['uvci'], safe='')}/qr.png",
            endpoint="GET /v1/certificates/{uvci}/qr.png",
            intended=run.traffic.now(),
            headers=citizen,
            raw=True,
        )
    if certificate.get("hc1") and _hash(dose_id) % 100 < scenario.VERIFICATIONS_PER_FETCH * 100:
        hc1 = certificate["hc1"]
        run.traffic.at(run.traffic.now() + run.hours(0.25 + chance), lambda m: verify(run, hc1, m))


async def verify(run: DayRun, hc1: str, moment: float) -> None:
    """A verifier scans a certificate (the service's own app, no token)."""
    await run.traffic.request(
        "POST",
        "certificates",
        "/v1/verify",
        endpoint="POST /v1/verify",
        intended=moment,
        body={"hc1": hc1},
    )


async def scheduling_runs(run: DayRun) -> None:
    """Booking's runs through the day book the day's registrants from tomorrow."""

    async def one(moment: float, _: int) -> None:
        await scheduling_run(run, moment)

    await run.traffic.schedule(run.day.scheduling_times, one)


async def allocation_runs(run: DayRun) -> None:
    """National logistics asks supply where vaccine should go over the coming week, and
    waits for the proposal: how long planning takes while the day goes on is a figure
    of its own (`allocation_planned` lines)."""
    logistics = run.traffic.headers(Role.LOGISTICS)

    async def one(moment: float, _: int) -> None:
        answer = await run.traffic.request(
            "POST",
            "supply",
            "/v1/allocation-runs",
            endpoint="POST /v1/allocation-runs",
            intended=moment,
            kind="allocation_run",
            body={"horizon_days": 7},
            headers=logistics,
            id_from="run_id",
        )
        run_id = accepted(answer, "run_id")
        if run_id is None:
            return
        await follow_run(
            run,
            "supply",
            f"/v1/allocation-runs/{run_id}",
            "GET /v1/allocation-runs/{id}",
            logistics,
            pending={"requested"},
            since=moment,
            note="allocation_planned",
            answer=answer,
        )

    await run.traffic.schedule(run.day.allocation_times, one)


async def lot_recall(run: DayRun) -> None:
    """A lot of the most used product is recalled mid-day: its certificates are revoked."""

    async def recall(moment: float, _: int) -> None:
        await run.traffic.request(
            "POST",
            "inventory",
            f"/v1/lots/{run.day.recalled_lot}/recall",
            endpoint="POST /v1/lots/{lot}/recall",
            intended=moment,
            kind="recall",
            body={"reason": "load test: quality defect reported by the manufacturer"},
            headers=run.traffic.headers(Role.ADMIN),
            id=run.day.recalled_lot,
        )

    await run.traffic.schedule([run.day.recall_at], recall)


async def recall_corrections(run: DayRun) -> None:
    """An hour after the recall, sites find some doses were entered with the recalled lot
    by mistake and correct them to the lot they came from: the certificates are re-issued."""
    await asyncio.sleep(max(run.day.recall_at + run.hours(1) - run.traffic.now(), 0.0))
    every = max(1, round(1 / scenario.CORRECTED_SHARE))
    chosen = run.recalled_lot_doses[::every]

    async def correct(moment: float, index: int) -> None:
        dose_id, site_id, product = chosen[index]
        other = run.lot_for(site_id, product, index, recalled_ok=False)
        await run.traffic.request(
            "POST",
            "administration",
            f"/v1/doses/{dose_id}/corrections",
            endpoint="POST /v1/doses/{id}/corrections",
            intended=moment,
            kind="correction",
            body={"reason": "the vial came from another lot", "lot_number": other},
            headers=run.traffic.headers(Role.SITE_STAFF, site_id=site_id),
            id=dose_id,
            lot=other,
        )

    start = run.traffic.now()
    spread = run.hours(1) / max(len(chosen), 1)
    await run.traffic.schedule([start + n * spread for n in range(len(chosen))], correct)


# What analysts, the press and the public read: (weight, path, endpoint, role or None).
ANALYST_READS: list[tuple[int, str, str, Role | None]] = [
    (40, "/v1/coverage?group_by=district", "GET /v1/coverage", None),
    (15, "/", "GET / (dashboard)", None),
    (15, "/v1/doses/daily", "GET /v1/doses/daily", None),
    (10, "/v1/coverage?group_by=age_band&dose=complete", "GET /v1/coverage", Role.PUBLIC_HEALTH),
    (10, "/v1/stock", "GET /v1/stock", Role.PUBLIC_HEALTH),
    (10, "/v1/bookings/stats", "GET /v1/bookings/stats", Role.PUBLIC_HEALTH),
]


async def analysts(run: DayRun) -> None:
    """Coverage and the dashboard read while the model changes, by the hour's shape."""
    mine = [at for n, at in enumerate(run.day.analyst_times) if run.shard.mine(n)]
    weights = [w for w, *_ in ANALYST_READS]

    async def read(moment: float, index: int) -> None:
        _, path, endpoint, role = random.Random(index).choices(ANALYST_READS, weights)[0]
        await run.traffic.request(
            "GET",
            "projections",
            path,
            endpoint=endpoint,
            intended=moment,
            headers=run.traffic.headers(role) if role else None,
        )

    await run.traffic.schedule(mine, read)


async def freshness_probes(run: DayRun) -> None:
    """One tagged dose at a time, in the one municipality nobody else lives in: from its
    201 until GET /v1/coverage counts it (polled every PROBE_POLL_SECONDS)."""
    district = municipalities()[run.day.probe_municipality].district_code
    path = f"/v1/coverage?group_by=municipality&district={district}"
    reader = run.traffic.headers(Role.PUBLIC_HEALTH)
    visible = 0
    for number, (moment, person) in enumerate(run.day.probes):
        await asyncio.sleep(max(moment - run.traffic.now(), 0.0))
        patient = Patient(
            run.citizens[person.national_id], run.day.probe_site, scenario.PROBE_PRODUCT, 1
        )
        dose_id = await record_dose(run, patient, run.traffic.now(), turn=number)
        if dose_id is None:
            continue
        recorded = run.traffic.now()
        visible += 1
        seen_at: float | None = None
        while run.traffic.now() - recorded < PROBE_GIVE_UP_SECONDS:
            answer = await run.traffic.request(
                "GET",
                "projections",
                path,
                endpoint="GET /v1/coverage (probe)",
                intended=run.traffic.now(),
                headers=reader,
            )
            rows = field_of(answer.body, "rows") or []
            people = next((r["people"] for r in rows if r["key"] == run.day.probe_municipality), 0)
            if (people or 0) >= visible:
                seen_at = answer.done
                break
            await asyncio.sleep(PROBE_POLL_SECONDS)
        run.traffic.note(
            "freshness",
            id=dose_id,
            recorded=round(recorded, 4),
            seen=None if seen_at is None else round(seen_at, 4),
            seconds=None if seen_at is None else round(seen_at - recorded, 4),
        )


async def health_floor(run: DayRun) -> None:
    """The baseline beside every figure: GET /healthz on each service, twice a second of
    wall time, through the same client (a round trip with no work behind it)."""
    moments = [n / 2 for n in range(int(run.day.seconds * 2))]

    async def probe(moment: float, index: int) -> None:
        service = sorted(run.traffic.urls)[index % len(run.traffic.urls)]
        await run.traffic.request(
            "GET", service, "/healthz", endpoint="GET /healthz (floor)", intended=moment
        )

    await run.traffic.schedule(moments, probe)


@dataclass(frozen=True)
class Step:
    """One phase of the day: `run` schedules its requests; `everywhere` runs it in every
    generator (each on its own share), otherwise in the first only."""

    name: str
    run: Callable[[DayRun], Awaitable[None]]
    everywhere: bool = True


DAY: list[Step] = [
    Step("registration wave", registration_wave),
    Step("scheduling runs", scheduling_runs, everywhere=False),
    Step("doses at sites, certificates, verifications", doses_at_sites),
    Step("allocation runs", allocation_runs, everywhere=False),
    Step("lot recall", lot_recall, everywhere=False),
    Step("recall corrections", recall_corrections),
    Step("analysts and the dashboard", analysts),
    Step("freshness probes", freshness_probes, everywhere=False),
    Step("baseline: /healthz", health_floor, everywhere=False),
]


async def run_day(run: DayRun, steps: list[Step] = DAY) -> None:
    """Every step of the day at once (each waits for its own moments)."""
    mine = [s for s in steps if s.everywhere or run.shard.first]
    await asyncio.gather(*(s.run(run) for s in mine))
