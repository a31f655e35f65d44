"""Booking: sites, their capacity, the auto-scheduler, appointments (port 8082).

Who may do what:
- admin: define sites, change a day's capacity or close it, run the scheduler, and
  everything the others may;
- citizen: read, reschedule and cancel their own appointments;
- site_staff: list their own site's appointments for a day;
- public_health: read the sites.

Every command is one unit of work (`store.transact`): the events of every stream it
touches, the read-model rows and the appointment claim commit together, and a conflict
rolls all of it back and decides again (slots.py). A scheduling run is many such units,
one per site day and batch (runs.py). The nightly run and the no-show sweep are
background resources (config.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import asyncpg
from aiohttp import web
from prometheus_client import Counter

from immunreg.contracts.booking import CONTEXT, SiteDefined
from immunreg.domain import Outcome
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, STORE_KEY, background_task
from immunreg.http.auth import Principal, Role, require_principal
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.middleware import metadata_from_request
from immunreg.http.problems import FieldError, Problem
from immunreg.http.versioning import (
    cursor_key,
    encode_cursor,
    etag,
    if_match_version,
    page_limit,
)
from immunreg.reference.geography import municipalities
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.service import Resource, Service

from . import readmodel
from .config import BookingConfig
from .demo import load as load_demo
from .domain import (
    SITE,
    SITEDAY,
    ChangeCapacity,
    DefineSite,
    SiteState,
    site_stream,
    siteday_stream,
)
from .eligibility import age_window
from .reactions import Runtime, build_reactions
from .runs import RunSummary, nightly_runs, no_show_sweeps, run_scheduler
from .schemas import (
    MAX_DAILY_DOSES,
    SITE_ID_PATTERN,
    AppointmentView,
    CitizenAppointments,
    DayIn,
    DayView,
    RescheduleIn,
    RunIn,
    SiteDayAppointments,
    SiteDayQuery,
    SiteIn,
    SitePage,
    SiteQuery,
    SiteView,
)
from .slots import Slots

# What a citizen is told on asking for another citizen's record (403 other_citizen).
OTHER_CITIZEN = "a citizen may see and change only their own appointments"

SCHEMA_FILE = Path(__file__).with_name("schema.sql")

api = Api(
    "immunreg booking",
    "1.0.0",
    "Vaccination sites and their capacity, the auto-scheduler, appointments for citizens, "
    "second doses booked from recorded doses.",
)

_SITE_ID = re.compile(SITE_ID_PATTERN)


@dataclass(frozen=True)
class BookingCounters:
    runs: Counter
    booked: Counter
    waiting: Counter
    cancellations: Counter
    reschedules: Counter


CONFIG_KEY = web.AppKey("booking_config", BookingConfig)
COUNTERS_KEY = web.AppKey("booking_counters", BookingCounters)


def _config(request: web.Request) -> BookingConfig:
    return request.app[CONFIG_KEY]


def _invalid(field: str, reason: str, code: str = "invalid_fields") -> Problem:
    return Problem.unprocessable(errors=[FieldError(field, reason)], code=code)


def _site_id(request: web.Request, *, creating: bool = False) -> str:
    site_id = request.match_info["site_id"]
    if len(site_id) > 64 or not _SITE_ID.match(site_id):
        if creating:
            raise _invalid("path.site_id", f"must match {SITE_ID_PATTERN} (at most 64 characters)")
        raise Problem.not_found(f"no site {site_id!r}")
    return site_id


def _capacity_errors(capacity: dict[str, int], field: str) -> list[FieldError]:
    catalog = vaccine_catalog()
    errors = []
    for code, doses in capacity.items():
        if code not in catalog:
            errors.append(FieldError(f"{field}.{code}", "not a product of the vaccine catalog"))
        elif not 0 <= doses <= MAX_DAILY_DOSES:
            errors.append(FieldError(f"{field}.{code}", f"between 0 and {MAX_DAILY_DOSES}"))
    return errors


# --- sites ------------------------------------------------------------------------------


def _site_view(row: asyncpg.Record) -> SiteView:
    return SiteView(
        site_id=row["site_id"],
        name=row["name"],
        municipality_code=row["municipality_code"],
        address=row["address"],
        latitude=row["latitude"],
        longitude=row["longitude"],
        opening_hours=row["opening_hours"],
        daily_capacity=readmodel.capacity_of(row["daily_capacity"]),
        version=row["version"],
    )


_SITE_ROW = """SELECT site_id, name, municipality_code, address, latitude, longitude,
    opening_hours, daily_capacity::text AS daily_capacity, version FROM sites"""


@api.put(
    "/v1/sites/{site_id}",
    body=SiteIn,
    responses={200: SiteView, 201: SiteView, 412: None, 422: None},
    roles={Role.ADMIN},
    summary="Define or change a vaccination site",
    tags=["sites"],
)
async def define_site(request: web.Request, body: SiteIn) -> web.StreamResponse:
    """Create the site or replace its definition (201 / 200, with its ETag); `If-Match` is
    honoured when sent. Lowering the default capacity keeps appointments already made."""
    site_id = _site_id(request, creating=True)
    errors = _capacity_errors(body.daily_capacity, "body.daily_capacity")
    if body.municipality_code not in municipalities():
        errors.insert(
            0, FieldError("body.municipality_code", "not a municipality code (2022 census)")
        )
    if errors:
        raise Problem.unprocessable(errors=errors, code="invalid_fields")
    expected = if_match_version(request)
    store = request.app[STORE_KEY]
    slots = Slots(store, metadata_from_request(request))
    definition = SiteDefined(
        site_id=site_id,
        name=body.name.strip(),
        municipality_code=body.municipality_code,
        address=body.address.strip(),
        latitude=body.latitude,
        longitude=body.longitude,
        opening_hours=body.opening_hours,
        daily_capacity=dict(sorted(body.daily_capacity.items())),
    )

    async def work(conn: Connection) -> tuple[int, Outcome[SiteState]]:
        await slots.site(conn, site_id, exclusive=True)  # no booking reads the old default now
        loaded = await store.load_state(SITE, site_stream(site_id), conn)
        if expected is not None and loaded.version != expected:
            raise ConcurrencyConflict(site_stream(site_id), expected)
        outcome = await store.decide_and_append(
            conn,
            SITE,
            site_stream(site_id),
            loaded,
            DefineSite(definition=definition),
            metadata=slots.metadata,
        )
        if outcome.events:
            await readmodel.save_site(conn, definition, outcome.version)
        return loaded.version, outcome

    before, outcome = await store.transact(work, retry_conflicts=expected is None)
    row = await request.app[POOL_KEY].fetchrow(f"{_SITE_ROW} WHERE site_id = $1", site_id)
    assert row is not None  # written in the same transaction
    return json_response(
        _site_view(row),
        status=201 if before == 0 else 200,
        headers={"ETag": etag(outcome.version), "Location": f"/v1/sites/{site_id}"},
    )


@api.get(
    "/v1/sites",
    query=SiteQuery,
    responses={200: SitePage, 422: None},
    roles={Role.ADMIN, Role.PUBLIC_HEALTH, Role.SITE_STAFF},
    summary="List the sites",
    tags=["sites"],
)
async def list_sites(request: web.Request, query: SiteQuery) -> web.StreamResponse:
    """Sites by id, a page at a time (`next_cursor`), optionally of one municipality."""
    limit = page_limit(query, code="invalid_fields")
    rows = await request.app[POOL_KEY].fetch(
        f"{_SITE_ROW} WHERE site_id > $1 AND ($2::text IS NULL OR municipality_code = $2) "
        "ORDER BY site_id LIMIT $3",
        cursor_key(query),
        query.municipality_code,
        limit + 1,
    )
    items = [_site_view(r) for r in rows[:limit]]
    cursor = encode_cursor(items[-1].site_id) if len(rows) > limit else None
    return json_response(SitePage(items=items, next_cursor=cursor))


def _path_day(request: web.Request) -> date:
    raw = request.match_info["date"]
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _invalid("path.date", "a date as YYYY-MM-DD") from None


@api.put(
    "/v1/sites/{site_id}/days/{date}",
    body=DayIn,
    responses={200: DayView, 404: None, 422: None},
    roles={Role.ADMIN},
    summary="Set a day's capacity, or close the site that day",
    tags=["sites"],
)
async def change_day(request: web.Request, body: DayIn) -> web.StreamResponse:
    """Replace the site's default capacity for one day, or close it. Closing cancels the
    day's open appointments ("site_closed"; the citizens are booked again by the next run);
    lowering capacity below what is booked keeps those appointments and books no more."""
    site_id = _site_id(request)
    day = _path_day(request)
    errors = _capacity_errors(body.capacity, "body.capacity")
    if day < _config(request).today():
        errors.insert(0, FieldError("path.date", "the day is over"))
    if errors:
        raise Problem.unprocessable(errors=errors, code="invalid_fields")
    store = request.app[STORE_KEY]
    slots = Slots(store, metadata_from_request(request))
    stream = siteday_stream(site_id, day)

    async def work(conn: Connection) -> DayView:
        site = await slots.site(conn, site_id)
        if not site.defined:
            raise Problem.not_found(f"no site {site_id}")
        capacity = dict(sorted(body.capacity.items()))
        outcome = await store.execute_in(
            conn,
            SITEDAY,
            stream,
            ChangeCapacity(site_id=site_id, day=day, capacity=capacity, closed=body.closed),
            metadata=slots.metadata,
        )
        if outcome.events:
            await readmodel.save_site_day(conn, site_id, day, capacity, body.closed)
        cancelled = 0
        if body.closed:
            for row in await conn.fetch(
                "SELECT appointment_id FROM appointments WHERE site_id = $1 AND day = $2 "
                "AND status = 'booked' ORDER BY appointment_id",
                site_id,
                day,
            ):
                await slots.cancel(conn, row["appointment_id"], "site_closed")
                cancelled += 1
        state = (await store.load_state(SITEDAY, stream, conn)).state
        return DayView(
            site_id=site_id,
            day=day,
            capacity=state.capacity(site.daily_capacity()),
            closed=state.closed,
            override=state.override is not None,
            booked={k: v for k, v in sorted(state.booked.items()) if v},
            cancelled=cancelled,
        )

    view = await store.transact(work)
    if view.cancelled:
        request.app[COUNTERS_KEY].cancellations.labels("site_closed").inc(view.cancelled)
    return json_response(view)


# --- the scheduler ----------------------------------------------------------------------


@api.post(
    "/v1/scheduling/runs",
    body=RunIn,
    responses={200: RunSummary, 422: None},
    roles={Role.ADMIN},
    idempotent=True,
    summary="Run the auto-scheduler now",
    tags=["scheduling"],
)
async def start_run(request: web.Request, body: RunIn) -> web.StreamResponse:
    """Book every waiting citizen who fits between `from_day` (default tomorrow) and
    `from_day + horizon_days - 1`: priority, then registration order; each booking records
    why that site, day and vaccine. Answers when done, with what was booked and, per reason,
    how many were left waiting. Safe to run concurrently with other runs and requests."""
    config = _config(request)
    today = config.today()
    from_day = body.from_day or today + timedelta(days=1)
    if from_day < today:
        raise _invalid("body.from_day", "must be today or later")
    summary = await run_scheduler(
        request.app[STORE_KEY],
        from_day=from_day,
        horizon_days=body.horizon_days,
        today=today,
        config=config,
        metadata=metadata_from_request(request),
    )
    _count_run(request.app, summary)
    return json_response(summary)


def _count_run(app: web.Application, summary: RunSummary) -> None:
    counters = app[COUNTERS_KEY]
    counters.runs.labels(summary.trigger).inc()
    counters.booked.labels(summary.trigger).inc(summary.booked)
    for reason, count in summary.waiting.items():
        counters.waiting.labels(reason).inc(count)


# --- appointments -----------------------------------------------------------------------


def _appointment_view(row: asyncpg.Record) -> AppointmentView:
    return AppointmentView(
        appointment_id=row["appointment_id"],
        citizen_id=row["citizen_id"],
        site_id=row["site_id"],
        municipality_code=row["municipality_code"],
        day=row["day"],
        product_code=row["product_code"],
        dose_number=row["dose_number"],
        booster=row["booster"],
        status=row["status"],
        reason=row["reason"],
        status_reason=row["status_reason"],
        booked_at=row["booked_at"],
    )


@api.get(
    "/v1/citizens/{citizen_id}/appointments",
    responses={200: CitizenAppointments, 403: None},
    roles={Role.CITIZEN, Role.ADMIN},
    summary="A citizen's appointments",
    tags=["appointments"],
)
async def citizen_appointments(request: web.Request) -> web.StreamResponse:
    """Every appointment of the citizen, newest first: the open one (status `booked`) and
    the history (cancelled, attended, missed), each with the reason it was booked."""
    citizen_id = request.match_info["citizen_id"]
    require_principal(request).require_own(citizen_id, OTHER_CITIZEN)
    rows = await request.app[POOL_KEY].fetch(
        f"SELECT {readmodel.APPOINTMENT_COLUMNS} FROM appointments WHERE citizen_id = $1 "
        "ORDER BY booked_at DESC, appointment_id DESC LIMIT 100",
        citizen_id,
    )
    return json_response(
        CitizenAppointments(citizen_id=citizen_id, items=[_appointment_view(r) for r in rows])
    )


async def _own_appointment(request: web.Request) -> tuple[asyncpg.Record, Principal]:
    appointment_id = request.match_info["appointment_id"]
    row = await readmodel.appointment(request.app[POOL_KEY], appointment_id[:100])
    principal = require_principal(request)
    if row is None or not principal.can_access_citizen(row["citizen_id"]):
        # Another citizen's appointment is "not found" too: ids are not to be probed.
        raise Problem.not_found("no such appointment")
    return row, principal


@api.post(
    "/v1/appointments/{appointment_id}/reschedule",
    body=RescheduleIn,
    responses={200: AppointmentView, 404: None, 409: None, 422: None},
    roles={Role.CITIZEN, Role.ADMIN},
    idempotent=True,
    summary="Move an appointment to another free slot",
    tags=["appointments"],
)
async def reschedule(request: web.Request, body: RescheduleIn) -> web.StreamResponse:
    """Another day (and optionally another site) with a free slot: 409 `slot_full` when
    that day is full, `no_stock` when the other site has no dose of the product left,
    `appointment_not_open` when the appointment is no longer open; 422 when the day is
    past, outside the dose interval or the product's age limits."""
    row, _ = await _own_appointment(request)
    config = _config(request)
    today = config.today()
    site_id = body.site_id or row["site_id"]
    errors = await _reschedule_errors(request, row, body.day, site_id, today)
    if errors:
        code = "invalid_fields" if len(errors) > 1 else errors[0][1]
        raise Problem.unprocessable(errors=[e for e, _ in errors], code=code)
    store = request.app[STORE_KEY]
    slots = Slots(store, metadata_from_request(request))

    async def work(conn: Connection) -> None:
        await slots.reschedule(
            conn, row["appointment_id"], site_id=site_id, day=body.day, today=today
        )

    await store.transact(work)
    request.app[COUNTERS_KEY].reschedules.inc()
    moved = await readmodel.appointment(request.app[POOL_KEY], row["appointment_id"])
    assert moved is not None
    return json_response(_appointment_view(moved))


async def _reschedule_errors(
    request: web.Request, row: asyncpg.Record, day: date, site_id: str, today: date
) -> list[tuple[FieldError, str]]:
    errors: list[tuple[FieldError, str]] = []
    pool = request.app[POOL_KEY]
    if day < today:
        errors.append((FieldError("body.day", "the day is over"), "day_over"))
    if (
        site_id != row["site_id"]
        and await pool.fetchval("SELECT 1 FROM sites WHERE site_id = $1", site_id) is None
    ):
        errors.append((FieldError("body.site_id", "no such site"), "site_not_found"))
    found = await readmodel.citizen(pool, row["citizen_id"])
    if found is not None and found[0]["birth_date"] is not None:
        citizen, due = found
        product = vaccine_catalog().get(row["product_code"])
        if product is not None:
            first, last = age_window(product, citizen["birth_date"])
            if day < first or (last is not None and day > last):
                errors.append(
                    (FieldError("body.day", "outside the product's age limits"), "age_limit")
                )
        if due is not None and due.earliest is not None and day < due.earliest:
            errors.append(
                (
                    FieldError("body.day", f"the interval allows {due.earliest} at the earliest"),
                    "outside_interval",
                )
            )
        elif (
            due is not None and due.latest is not None and due.latest >= today and day > due.latest
        ):
            errors.append(
                (
                    FieldError("body.day", f"the interval allows {due.latest} at the latest"),
                    "outside_interval",
                )
            )
    return errors


@api.post(
    "/v1/appointments/{appointment_id}/cancel",
    responses={200: AppointmentView, 404: None, 409: None},
    roles={Role.CITIZEN, Role.ADMIN},
    idempotent=True,
    summary="Cancel an appointment",
    tags=["appointments"],
)
async def cancel(request: web.Request) -> web.StreamResponse:
    """The slot becomes free at once. The registration stays active, so the next scheduling
    run books the citizen again; withdraw the registration to stop being booked. Cancelling
    twice changes nothing; an attended or missed appointment cannot be cancelled (409)."""
    row, principal = await _own_appointment(request)
    by = "citizen" if principal.role is Role.CITIZEN else "admin"
    store = request.app[STORE_KEY]
    slots = Slots(store, metadata_from_request(request))

    async def work(conn: Connection) -> int:
        outcome = await slots.cancel(conn, row["appointment_id"], f"cancelled_by_{by}")
        return len(outcome.events)

    if await store.transact(work):
        request.app[COUNTERS_KEY].cancellations.labels(by).inc()
    cancelled = await readmodel.appointment(request.app[POOL_KEY], row["appointment_id"])
    assert cancelled is not None
    return json_response(_appointment_view(cancelled))


@api.get(
    "/v1/sites/{site_id}/appointments",
    query=SiteDayQuery,
    responses={200: SiteDayAppointments, 403: None, 404: None, 422: None},
    roles={Role.SITE_STAFF, Role.ADMIN},
    summary="A site's appointments on one day",
    tags=["appointments"],
)
async def site_appointments(request: web.Request, query: SiteDayQuery) -> web.StreamResponse:
    """The day's list for the site (every status), a page at a time. Site staff see only
    their own site."""
    site_id = _site_id(request)
    require_principal(request).require_site(site_id)
    limit = page_limit(query, code="invalid_fields")
    rows = await request.app[POOL_KEY].fetch(
        f"SELECT {readmodel.APPOINTMENT_COLUMNS} FROM appointments "
        "WHERE site_id = $1 AND day = $2 AND appointment_id > $3 "
        "ORDER BY appointment_id LIMIT $4",
        site_id,
        query.date,
        cursor_key(query),
        limit + 1,
    )
    items = [_appointment_view(r) for r in rows[:limit]]
    cursor = encode_cursor(items[-1].appointment_id) if len(rows) > limit else None
    return json_response(
        SiteDayAppointments(site_id=site_id, day=query.date, items=items, next_cursor=cursor)
    )


# --- the service ------------------------------------------------------------------------


def _runtime_resource(runtime: Runtime) -> Resource:
    async def booking_runtime(app: web.Application) -> AsyncIterator[None]:
        config = BookingConfig.from_settings(app[SETTINGS_KEY])
        app[CONFIG_KEY] = config
        metrics = app[METRICS_KEY]
        app[COUNTERS_KEY] = BookingCounters(
            runs=metrics.counter(
                "immunreg_booking_runs_total", "Scheduling runs, by trigger.", ["trigger"]
            ),
            booked=metrics.counter(
                "immunreg_booking_run_bookings_total",
                "Appointments booked by scheduling runs, by trigger.",
                ["trigger"],
            ),
            waiting=metrics.counter(
                "immunreg_booking_run_waiting_total",
                "Citizens a scheduling run left waiting, by reason.",
                ["reason"],
            ),
            cancellations=metrics.counter(
                "immunreg_booking_cancellations_total", "Appointments cancelled, by whom.", ["by"]
            ),
            reschedules=metrics.counter(
                "immunreg_booking_reschedules_total", "Appointments rescheduled."
            ),
        )
        runtime.fill(app[STORE_KEY], config)
        try:
            yield
        finally:
            runtime.fill(None)

    return booking_runtime


async def _nightly(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG_KEY]
    if not config.schedule_enabled:
        yield
        return
    async with background_task(
        nightly_runs(app[STORE_KEY], config, lambda summary: _count_run(app, summary))
    ):
        yield


async def _no_shows(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG_KEY]
    if not config.no_show_enabled:
        yield
        return
    async with background_task(no_show_sweeps(app[STORE_KEY], config)):
        yield


def build_service(*, consume: bool = True) -> Service:
    """A fresh booking Service (its reactions bound to the app it is started in).

    `consume=False` leaves out the consumer (tests that feed the read models directly).
    """
    runtime = Runtime()
    return Service(
        name="booking",
        api=api,
        publishes=CONTEXT,
        schema_files=[SCHEMA_FILE],
        reactions=build_reactions(runtime) if consume else None,
        resources=(_runtime_resource(runtime), _nightly, _no_shows),
        demo=load_demo,
    )


service = build_service()
