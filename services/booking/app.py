"""Booking: sites, their capacity, the auto-scheduler, appointments (port 8082).

Who may do what:
- admin: define sites, change a day's capacity or close it, run the scheduler, and
  everything the others may;
- citizen: read, reschedule and cancel their own appointments;
- site_staff: list their own site's appointments for a day; read the appointments of a
  citizen booked at their site, or of another when they state why (`Access-Reason`);
  every read of a citizen's appointments is audited;
- public_health: read the sites.

Routes only: each decodes the request, checks it against the domain's rules, calls a
command of handlers.py (one unit of work each, or one per batch for a scheduling run)
or a query of readmodel.py, and encodes the answer. The nightly run and the no-show
sweep (jobs.py) are background resources, switched by config.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from aiohttp import web
from prometheus_client import Counter

from immunreg import audit
from immunreg.contracts.booking import CONTEXT, SiteDefined
from immunreg.domain import NotFound
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, STORE_KEY, background_task
from immunreg.http.auth import Principal, Reach, Role, require_principal
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.middleware import metadata_from_request
from immunreg.http.problems import FieldError, Problem
from immunreg.http.shutdown import SHUTDOWN_KEY
from immunreg.http.versioning import (
    cursor_key,
    encode_cursor,
    etag,
    if_match_version,
    page_limit,
)
from immunreg.messaging.reactions import Provided
from immunreg.runs import BackgroundRuns, Progress, RunRecord
from immunreg.service import Resource, Service

from . import handlers, readmodel
from .config import BookingConfig
from .demo import load as load_demo
from .domain import (
    INVALID_FIELDS,
    ChangeCapacity,
    Violation,
    day_violations,
    refusal_code,
    run_violations,
    site_violations,
)
from .handlers import Dependencies, build_reactions
from .jobs import nightly_runs, no_show_sweeps, run_parameters
from .runworker import do_run
from .schemas import (
    SITE_ID_PATTERN,
    AppointmentView,
    CitizenAppointments,
    DayIn,
    DayView,
    RescheduleIn,
    RunCounts,
    RunIn,
    RunView,
    SiteDayAppointments,
    SiteDayQuery,
    SiteIn,
    SitePage,
    SiteQuery,
    SiteView,
)

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
RUNS_KEY = web.AppKey("booking_runs", BackgroundRuns)
COUNTERS_KEY = web.AppKey("booking_counters", BookingCounters)


def _config(request: web.Request) -> BookingConfig:
    return request.app[CONFIG_KEY]


def _invalid(field: str, reason: str, code: str = INVALID_FIELDS) -> Problem:
    return Problem.unprocessable(errors=[FieldError(field, reason)], code=code)


def _refused(violations: list[Violation], code: str | None = None) -> Problem:
    """Every broken rule in one 422; `code`, else the rule's when only one is broken."""
    return Problem.unprocessable(
        errors=[FieldError(v.field, v.reason) for v in violations],
        code=code or refusal_code(violations),
    )


def _site_id(request: web.Request, *, creating: bool = False) -> str:
    site_id = request.match_info["site_id"]
    if len(site_id) > 64 or not _SITE_ID.match(site_id):
        if creating:
            raise _invalid("path.site_id", f"must match {SITE_ID_PATTERN} (at most 64 characters)")
        raise Problem.not_found(f"no site {site_id!r}")
    return site_id


def _path_day(request: web.Request) -> date:
    raw = request.match_info["date"]
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _invalid("path.date", "a date as YYYY-MM-DD") from None


# --- sites ------------------------------------------------------------------------------


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
    violations = site_violations(body.municipality_code, body.daily_capacity)
    if violations:
        raise _refused(violations, code=INVALID_FIELDS)
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
    saved = await handlers.define_site(
        request.app[STORE_KEY],
        definition,
        expected_version=if_match_version(request),
        metadata=metadata_from_request(request),
    )
    view = await readmodel.site(request.app[POOL_KEY], site_id)
    assert view is not None  # written in the same transaction
    return json_response(
        view,
        status=201 if saved.created else 200,
        headers={"ETag": etag(saved.version), "Location": f"/v1/sites/{site_id}"},
    )


@api.get(
    "/v1/sites",
    query=SiteQuery,
    responses={200: SitePage, 422: None},
    # Citizens too: the portal shows where an appointment is, and which sites to move to.
    roles={
        Role.ADMIN: Reach.ANY,
        Role.PUBLIC_HEALTH: Reach.ANY,
        Role.SITE_STAFF: Reach.ANY,
        Role.CITIZEN: Reach.ANY,
    },
    summary="List the sites",
    tags=["sites"],
)
async def list_sites(request: web.Request, query: SiteQuery) -> web.StreamResponse:
    """Sites by id, a page at a time (`next_cursor`), optionally of one municipality."""
    limit = page_limit(query, code=INVALID_FIELDS)
    found = await readmodel.sites(
        request.app[POOL_KEY],
        after=cursor_key(query),
        municipality_code=query.municipality_code,
        limit=limit + 1,
    )
    items = found[:limit]
    cursor = encode_cursor(items[-1].site_id) if len(found) > limit else None
    return json_response(SitePage(items=items, next_cursor=cursor))


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
    violations = day_violations(day, _config(request).today(), body.capacity)
    if violations:
        raise _refused(violations, code=INVALID_FIELDS)
    command = ChangeCapacity(
        site_id=site_id, day=day, capacity=dict(sorted(body.capacity.items())), closed=body.closed
    )
    try:
        view = await handlers.change_day(
            request.app[STORE_KEY], command, metadata=metadata_from_request(request)
        )
    except NotFound as error:
        raise Problem.not_found(error.message) from error
    if view.cancelled:
        request.app[COUNTERS_KEY].cancellations.labels("site_closed").inc(view.cancelled)
    return json_response(view)


# --- the scheduler ----------------------------------------------------------------------


@api.post(
    "/v1/scheduling/runs",
    body=RunIn,
    responses={202: RunView, 422: None},
    roles={Role.ADMIN},
    idempotent=True,
    summary="Start a run of the auto-scheduler",
    tags=["scheduling"],
)
async def start_run(request: web.Request, body: RunIn) -> web.StreamResponse:
    """Accepted at once (202, `Location` of the run); the run books in the background
    every waiting citizen who fits between `from_day` (default tomorrow) and
    `from_day + horizon_days - 1`: priority, then registration order; each booking records
    why that site, day and vaccine. Poll `GET /v1/scheduling/runs/{run_id}` for its
    progress until `status` is `completed` (or `failed`). Safe to run concurrently with
    other runs and requests."""
    config = _config(request)
    today = config.today()
    from_day = body.from_day or today + timedelta(days=1)
    violations = run_violations(from_day, today)
    if violations:
        raise _refused(violations, code=INVALID_FIELDS)
    record = await request.app[RUNS_KEY].submit(
        run_parameters(
            trigger="on_demand",
            from_day=from_day,
            horizon_days=body.horizon_days,
            today=today,
            correlation_id=metadata_from_request(request).correlation_id,
        ),
        requested_by=require_principal(request).subject,
    )
    return json_response(
        run_view(record),
        status=202,
        headers={"Location": f"/v1/scheduling/runs/{record.run_id}"},
    )


@api.get(
    "/v1/scheduling/runs/{run_id}",
    responses={200: RunView, 404: None},
    roles={Role.ADMIN},
    summary="A scheduling run: status, progress, counts",
    tags=["scheduling"],
)
async def read_run(request: web.Request) -> web.StreamResponse:
    """`queued`, then `running` with its progress (citizens considered, booked so far,
    batches committed), then `completed` with what was booked and, per reason, how many
    were left waiting, or `failed` with why. A run whose service stopped mid-run is
    `failed` ("interrupted"); what it booked stays booked, and the next run books the rest."""
    run_id = request.match_info["run_id"]
    record = await request.app[RUNS_KEY].get(run_id[:100])
    if record is None:
        raise Problem.not_found(f"no scheduling run {run_id!r}")
    return json_response(run_view(record))


def run_view(record: RunRecord) -> RunView:
    """The run as the API shows it: the final counts once done, else its progress."""
    counts = msgspec.convert(record.result or record.progress, RunCounts)
    params = record.params
    return RunView(
        run_id=record.run_id,
        status=record.status,
        trigger=params["trigger"],
        from_day=date.fromisoformat(params["from_day"]),
        horizon_days=params["horizon_days"],
        requested_by=record.requested_by,
        requested_at=record.requested_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        seconds=record.seconds,
        considered=counts.considered,
        booked=counts.booked,
        booked_elsewhere=counts.booked_elsewhere,
        batches_committed=counts.batches_committed,
        replanned=counts.replanned,
        waiting=counts.waiting,
        timings=counts.timings,
        error=record.error,
    )


def _count_run(app: web.Application, trigger: str, counts: RunCounts) -> None:
    counters = app[COUNTERS_KEY]
    counters.runs.labels(trigger).inc()
    counters.booked.labels(trigger).inc(counts.booked)
    for reason, count in counts.waiting.items():
        counters.waiting.labels(reason).inc(count)


# --- appointments -----------------------------------------------------------------------


@api.get(
    "/v1/citizens/{citizen_id}/appointments",
    responses={200: CitizenAppointments, 403: None},
    roles={Role.CITIZEN: Reach.OWN, Role.SITE_STAFF: Reach.LINKED, Role.ADMIN: Reach.ANY},
    summary="A citizen's appointments",
    tags=["appointments"],
)
async def citizen_appointments(request: web.Request) -> web.StreamResponse:
    """Every appointment of the citizen, newest first: the open one (status `booked`) and
    the history (cancelled, attended, missed), each with the reason it was booked. Site
    staff see a citizen with an appointment at their site, or another with an
    `Access-Reason`; every read is audited."""
    citizen_id = request.match_info["citizen_id"]
    require_principal(request).require_own(citizen_id, OTHER_CITIZEN)
    await audit.citizen_read(request, citizen_id)
    items = await readmodel.citizen_appointments(request.app[POOL_KEY], citizen_id)
    return json_response(CitizenAppointments(citizen_id=citizen_id, items=items))


async def _own_appointment(request: web.Request) -> tuple[asyncpg.Record, Principal]:
    appointment_id = request.match_info["appointment_id"]
    row = await readmodel.appointment(request.app[POOL_KEY], appointment_id[:100])
    principal = require_principal(request)
    if row is None or not principal.can_access_citizen(row["citizen_id"]):
        # Another citizen's appointment is "not found" too: ids are not to be probed.
        raise Problem.not_found("no such appointment")
    return row, principal


async def _appointment_now(request: web.Request, appointment_id: str) -> AppointmentView:
    row = await readmodel.appointment(request.app[POOL_KEY], appointment_id)
    assert row is not None  # changed, never removed
    return readmodel.appointment_view(row)


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
    today = _config(request).today()
    site_id = body.site_id or row["site_id"]
    violations = await handlers.reschedule_violations_of(
        request.app[POOL_KEY], row, day=body.day, site_id=site_id, today=today
    )
    if violations:
        raise _refused(violations)
    await handlers.reschedule(
        request.app[STORE_KEY],
        row["appointment_id"],
        site_id=site_id,
        day=body.day,
        today=today,
        metadata=metadata_from_request(request),
    )
    request.app[COUNTERS_KEY].reschedules.inc()
    return json_response(await _appointment_now(request, row["appointment_id"]))


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
    if await handlers.cancel(
        request.app[STORE_KEY],
        row["appointment_id"],
        f"cancelled_by_{by}",
        metadata=metadata_from_request(request),
    ):
        request.app[COUNTERS_KEY].cancellations.labels(by).inc()
    return json_response(await _appointment_now(request, row["appointment_id"]))


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
    limit = page_limit(query, code=INVALID_FIELDS)
    found = await readmodel.site_day_appointments(
        request.app[POOL_KEY], site_id, query.date, after=cursor_key(query), limit=limit + 1
    )
    items = found[:limit]
    cursor = encode_cursor(items[-1].appointment_id) if len(found) > limit else None
    return json_response(
        SiteDayAppointments(site_id=site_id, day=query.date, items=items, next_cursor=cursor)
    )


# --- the service ------------------------------------------------------------------------


def _runtime_resource(dependencies: Provided[Dependencies]) -> Resource:
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
        async with dependencies.providing(Dependencies(store=app[STORE_KEY], config=config)):
            yield

    return booking_runtime


async def _scheduling_runs(app: web.Application) -> AsyncIterator[None]:
    """The worker of scheduling runs, for the life of the app (immunreg.runs); a big run
    is done by a process of its own (runworker.py), so the API's loop stays free, and a
    small one here, where a process's start would cost more than the run."""
    store, config = app[STORE_KEY], app[CONFIG_KEY]

    async def work(record: RunRecord, progress: Progress) -> dict[str, Any]:
        counts = await do_run(app[SETTINGS_KEY], store, config, record, progress)
        _count_run(app, record.params["trigger"], counts)
        return msgspec.structs.asdict(counts)

    runs = BackgroundRuns(store.pool, "scheduling", work, interval=config.runs_interval)
    app[RUNS_KEY] = runs
    async with background_task(runs.run_forever(), shutdown=app[SHUTDOWN_KEY]):
        yield


async def _nightly(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG_KEY]
    if not config.schedule_enabled:
        yield
        return
    async with background_task(nightly_runs(app[RUNS_KEY], config)):
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
    dependencies: Provided[Dependencies] = Provided("booking's event store and configuration")
    return Service(
        name="booking",
        api=api,
        publishes=CONTEXT,
        schema_files=[SCHEMA_FILE],
        reactions=build_reactions(dependencies) if consume else None,
        resources=(_runtime_resource(dependencies), _scheduling_runs, _nightly, _no_shows),
        demo=load_demo,
        citizen_at_site=readmodel.citizen_at_site,
    )


service = build_service()
