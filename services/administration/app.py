"""Administration: sites record every dose, correct or void it, report adverse events;
citizens and clinicians fetch the record as FHIR (port 8084).

Every check reads this service's own read models (reactions.py), never another
service. A dose command is one transaction: lock the citizen's row (so two doses of
one citizen are checked one after the other), load the DoseRecord, run the rules,
decide, append (with the outbox rows), update the `doses` read model. A conflicting
append rolls it all back and the command is decided again.

The same dose sent twice is recorded once: with the same Idempotency-Key the first
answer is replayed (201); without one, the dose id (derived from citizen, lot, dose
number and time) names a stream that already exists and the answer is 200 with the
same id. A dose voided since is a 409 (`dose_voided`).

Who may do what:
- record: `site_staff` at their own site (403 `other_site` elsewhere), `admin`
  anywhere; only `admin` may send `override_reason` (403 `override_not_allowed`);
- correct, void: `admin`, or `site_staff` of the site that recorded the dose;
- read doses and FHIR: the citizen their own, `site_staff` (the clinician at the
  chair needs the history) and `admin`; `public_health` and `logistics` nothing personal;
- report an adverse event: `site_staff` (any site: the clinician who sees the
  reaction may be elsewhere), `admin`, and the citizen for their own dose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
import msgspec
from aiohttp import web
from msgspec import UnsetType
from prometheus_client import Counter

from immunreg.contracts.administration import CONTEXT
from immunreg.contracts.envelope import Context, Envelope, new_event_id
from immunreg.domain import Loaded, Outcome
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, STORE_KEY
from immunreg.http.auth import Principal, Role, require_principal
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.middleware import metadata_from_request
from immunreg.http.openapi import Media
from immunreg.http.problems import FieldError, Problem
from immunreg.http.versioning import etag, if_match_version
from immunreg.reference.calendar import age_on, local_date
from immunreg.reference.vaccines import VaccineCatalog, vaccine_catalog
from immunreg.service import Service

from . import fhir, readmodel
from .demo import load as load_demo
from .domain import (
    CLOCK_SKEW,
    Administer,
    Aggregates,
    Correct,
    DoseFacts,
    DoseRefused,
    DoseState,
    Void,
    aggregates,
    dose_id_for,
    dose_stream,
    refuse_unrecordable,
    report_stream,
)
from .domain import ReportAdverseEvent as ReportCommand
from .reactions import reactions
from .rules import CitizenFacts, DoseRequest, check_dose
from .schemas import (
    AdverseEventRecorded,
    AdverseEventView,
    CitizenDoses,
    CorrectDose,
    DoseRecorded,
    DoseView,
    RecordDose,
    ReportAdverseEvent,
    VoidDose,
)

# What a citizen is told on asking for another citizen's record (403 other_citizen).
OTHER_CITIZEN = "a citizen may read only their own record"

api = Api(
    "administration",
    "1.0.0",
    "Vaccination sites record every dose, correct or void records (never deleted), report "
    "adverse events following immunization; a citizen's record is served as HL7 FHIR R4.",
)

COMMAND_ATTEMPTS = 5
EVENTS_CONTEXT_SETTING = "EVENTS_CONTEXT"
"""`Settings.extra` key: publish under another context name (benchmarks, never production)."""

T = TypeVar("T")

RECORDERS = {Role.SITE_STAFF, Role.ADMIN}
READERS = {Role.CITIZEN, Role.SITE_STAFF, Role.ADMIN}


@dataclass(frozen=True)
class AdministrationMetrics:
    """Domain counters (created once per app)."""

    doses: Counter
    refusals: Counter
    overrides: Counter
    corrections: Counter
    voids: Counter
    adverse_events: Counter


AGGREGATES = web.AppKey("administration_aggregates", Aggregates)
COUNTERS = web.AppKey("administration_metrics", AdministrationMetrics)


async def administration_resources(app: web.Application) -> AsyncIterator[None]:
    """The aggregates (on administration's topic) and the domain counters."""
    name = app[SETTINGS_KEY].extra.get(EVENTS_CONTEXT_SETTING)
    context = CONTEXT.renamed(name) if name else CONTEXT
    app[AGGREGATES] = aggregates(context)
    metrics = app[METRICS_KEY]
    app[COUNTERS] = AdministrationMetrics(
        doses=metrics.counter(
            "immunreg_doses_recorded_total",
            "Doses recorded, by product and whether the dose is a booster.",
            ["product_code", "booster"],
        ),
        refusals=metrics.counter(
            "immunreg_dose_refusals_total", "Doses refused, by the first rule broken.", ["rule"]
        ),
        overrides=metrics.counter(
            "immunreg_dose_overrides_total", "Doses recorded despite a rule, by rule.", ["rule"]
        ),
        corrections=metrics.counter("immunreg_dose_corrections_total", "Dose records corrected."),
        voids=metrics.counter("immunreg_dose_voids_total", "Dose records voided."),
        adverse_events=metrics.counter(
            "immunreg_adverse_events_total", "Adverse events reported, by seriousness.", ["serious"]
        ),
    )
    yield


# --- helpers --------------------------------------------------------------------------------


def _require_override_right(principal: Principal, override_reason: str | None) -> None:
    if override_reason is not None and principal.role is not Role.ADMIN:
        raise Problem.forbidden(
            "only an administrator may record a dose despite the rules (override_reason)",
            code="override_not_allowed",
        )


def _require_past(field: str, moment: datetime) -> None:
    if moment > datetime.now(UTC) + CLOCK_SKEW:
        raise Problem.unprocessable(
            errors=[FieldError(f"body.{field}", "is in the future")], code="invalid_fields"
        )


def _refused(request: web.Request, error: DoseRefused) -> Problem:
    request.app[COUNTERS].refusals.labels(error.code).inc()
    return Problem.unprocessable(
        error.message,
        code=error.code,
        errors=[FieldError(f"body.{v.field}", f"{v.code}: {v.message}") for v in error.violations],
    )


def _facts(
    *,
    dose_id: str,
    request: DoseRequest,
    citizen: CitizenFacts,
    series_length: int,
    site_municipality_code: str,
    vaccinator_id: str,
    appointment_id: str | None,
    injection_site: str | None,
) -> DoseFacts:
    """The record of a dose whose citizen and product are known (checked before)."""
    assert citizen.birth_date is not None and citizen.sex is not None
    return DoseFacts(
        dose_id=dose_id,
        citizen_id=request.citizen_id,
        site_id=request.site_id,
        site_municipality_code=site_municipality_code,
        citizen_municipality_code=citizen.municipality_code or "",
        product_code=request.product_code,
        lot_number=request.lot_number,
        dose_number=request.dose_number,
        series_length=series_length,
        administered_at=request.administered_at,
        age_at_vaccination=age_on(citizen.birth_date, local_date(request.administered_at)),
        sex=citizen.sex,
        vaccinator_id=vaccinator_id,
        appointment_id=appointment_id,
        injection_site=injection_site,
    )


async def _apply(conn: Connection, envelopes: Sequence[Envelope], context: Context) -> None:
    """Bring the read model up to the events just appended (same transaction)."""
    for envelope in envelopes:
        await readmodel.apply_dose_event(conn, envelope, context.read(envelope))


def _adverse_view(row: asyncpg.Record) -> AdverseEventView:
    return AdverseEventView(
        report_id=row["report_id"],
        symptoms=list(row["symptoms"]),
        onset_at=row["onset_at"],
        serious=row["serious"],
        outcome=row["outcome"],
        reporter_role=row["reporter_role"],
        description=row["description"],
        reported_at=row["reported_at"],
    )


def _dose_view(
    row: asyncpg.Record, catalog: VaccineCatalog, adverse: Sequence[AdverseEventView] = ()
) -> DoseView:
    product = catalog.get(row["product_code"])
    return DoseView(
        dose_id=row["dose_id"],
        citizen_id=row["citizen_id"],
        status=row["status"],
        version=row["version"],
        site_id=row["site_id"],
        site_name=row["site_name"],
        site_municipality_code=row["site_municipality_code"],
        product_code=row["product_code"],
        product_name=product.name if product else None,
        lot_number=row["lot_number"],
        expiry_date=row["expiry_date"],
        dose_number=row["dose_number"],
        series_length=row["series_length"],
        series_complete=row["series_complete"],
        booster=row["booster"],
        administered_at=row["administered_at"],
        age_at_vaccination=row["age_at_vaccination"],
        vaccinator_id=row["vaccinator_id"],
        appointment_id=row["appointment_id"],
        injection_site=row["injection_site"],
        override_reason=row["override_reason"],
        overridden_rules=list(row["overridden_rules"]),
        corrections=row["corrections"],
        last_correction_reason=row["last_correction_reason"],
        void_reason=row["void_reason"],
        recorded_at=row["recorded_at"],
        updated_at=row["updated_at"],
        adverse_events=list(adverse),
    )


async def _citizen_doses(
    request: web.Request, citizen_id: str
) -> tuple[CitizenFacts, list[DoseView]]:
    """The citizen and their doses (with adverse events); 404 unknown, 410 erased."""
    pool = request.app[POOL_KEY]
    citizen = await readmodel.fetch_citizen(pool, citizen_id)
    if citizen is None:
        raise Problem.not_found("no citizen is known under this id")
    if citizen.status == "erased":
        raise Problem(410, "the citizen's data was erased", code="citizen_erased")
    catalog = vaccine_catalog()
    adverse: dict[str, list[AdverseEventView]] = {}
    for row in await readmodel.fetch_adverse_events(pool, citizen_id):
        adverse.setdefault(row["dose_id"], []).append(_adverse_view(row))
    doses = [
        _dose_view(row, catalog, adverse.get(row["dose_id"], []))
        for row in await readmodel.fetch_doses(pool, citizen_id)
    ]
    return citizen, doses


async def _dose_response(
    request: web.Request, dose_id: str, principal: Principal | None = None
) -> web.Response:
    """The dose as it stands, with its ETag; with `principal`, a citizen sees only their own."""
    pool = request.app[POOL_KEY]
    row = await readmodel.fetch_dose(pool, dose_id)
    if row is None:
        raise Problem.not_found("no dose is recorded under this id")
    if principal is not None:
        principal.require_own(row["citizen_id"], OTHER_CITIZEN)
    adverse = [
        _adverse_view(r)
        for r in await readmodel.fetch_adverse_events(pool, row["citizen_id"])
        if r["dose_id"] == dose_id
    ]
    view = _dose_view(row, vaccine_catalog(), adverse)
    return json_response(view, headers={"ETag": etag(view.version)})


# --- recording ------------------------------------------------------------------------------


@api.post(
    "/v1/doses",
    body=RecordDose,
    responses={200: DoseRecorded, 201: DoseRecorded, 403: None, 409: None, 422: None},
    roles=RECORDERS,
    idempotent=True,
    summary="Record a dose given at a site",
)
async def record_dose(request: web.Request, body: RecordDose) -> web.StreamResponse:
    """Record a dose after checking it against the citizen, the lot at the site and the
    citizen's history (422 naming every rule broken: `citizen_unknown`, `citizen_erased`,
    `product_unknown`, `lot_not_at_site`, `product_mismatch`, `lot_expired`, `lot_recalled`,
    `dose_number_out_of_sequence`, `interval_too_short`, `age_below_minimum`,
    `age_above_maximum`). An administrator may record despite all but the first three by
    sending `override_reason`, which is kept. 201 with the new dose id; 200 with the same
    id when this dose (citizen, lot, dose number, time) is already recorded."""
    principal = require_principal(request)
    principal.require_site(body.site_id)
    _require_override_right(principal, body.override_reason)
    _require_past("administered_at", body.administered_at)
    catalog = vaccine_catalog()
    dose_id = dose_id_for(body.citizen_id, body.lot_number, body.dose_number, body.administered_at)
    stream = dose_stream(dose_id)
    dose_request = DoseRequest(
        citizen_id=body.citizen_id,
        site_id=body.site_id,
        lot_number=body.lot_number,
        product_code=body.product_code,
        dose_number=body.dose_number,
        administered_at=body.administered_at,
    )
    store = request.app[STORE_KEY]
    aggregate = request.app[AGGREGATES].dose
    metadata = metadata_from_request(request)

    async def work(conn: Connection) -> Outcome[DoseState] | Loaded[DoseState]:
        citizen = await readmodel.lock_citizen(conn, body.citizen_id)
        loaded = await store.load_state(aggregate, stream, conn)
        if loaded.version > 0:
            return loaded  # the same dose, sent again
        lot = await readmodel.fetch_lot(conn, body.lot_number, body.site_id)
        history = await readmodel.fetch_history(conn, body.citizen_id)
        violations = check_dose(dose_request, citizen, lot, history, catalog)
        refuse_unrecordable(violations)
        assert citizen is not None  # else citizen_unknown refused it
        facts = _facts(
            dose_id=dose_id,
            request=dose_request,
            citizen=citizen,
            series_length=catalog[body.product_code].series_length,
            site_municipality_code=await readmodel.fetch_site_municipality(conn, body.site_id)
            or "",
            vaccinator_id=body.vaccinator_id,
            appointment_id=body.appointment_id,
            injection_site=body.injection_site,
        )
        command = Administer(
            facts=facts,
            violations=violations,
            override_reason=body.override_reason,
            may_override=principal.role is Role.ADMIN,
        )
        outcome = await store.decide_and_append(
            conn, aggregate, stream, loaded, command, metadata=metadata
        )
        await _apply(conn, outcome.events, aggregate.context)
        return outcome

    try:
        result = await store.transact(work, attempts=COMMAND_ATTEMPTS)
    except DoseRefused as error:
        raise _refused(request, error) from error
    headers = {"Location": f"/v1/doses/{dose_id}"}
    if isinstance(result, Loaded):
        if result.state.status == "entered-in-error":
            raise Problem.conflict(
                "this dose was recorded and then voided; correct or record it anew",
                code="dose_voided",
            )
        return json_response(DoseRecorded(dose_id), status=200, headers=headers)
    counters = request.app[COUNTERS]
    booster = result.state.facts is not None and result.state.facts.booster
    counters.doses.labels(body.product_code, str(booster).lower()).inc()
    for rule in result.state.overridden_rules:
        counters.overrides.labels(rule).inc()
    headers["ETag"] = etag(result.version)
    return json_response(DoseRecorded(dose_id), status=201, headers=headers)


@api.get(
    "/v1/doses/{dose_id}",
    responses={200: DoseView, 403: None, 404: None},
    roles=READERS,
    summary="Read one recorded dose",
)
async def read_dose(request: web.Request) -> web.StreamResponse:
    """The dose as it stands (corrections applied), with its ETag for If-Match."""
    return await _dose_response(request, request.match_info["dose_id"], require_principal(request))


async def _change_dose(
    request: web.Request,
    command_for: Callable[[Connection, DoseState], Awaitable[Correct | Void]],
) -> Outcome[DoseState]:
    """Load the dose, check the caller may change it, decide, append, update the read
    model: one transaction. `If-Match` is honoured when sent (412 when stale)."""
    principal = require_principal(request)
    dose_id = request.match_info["dose_id"]
    expected = if_match_version(request)
    store = request.app[STORE_KEY]
    aggregate = request.app[AGGREGATES].dose
    stream = dose_stream(dose_id)
    metadata = metadata_from_request(request)

    async def work(conn: Connection) -> Outcome[DoseState]:
        loaded = await store.load_state(aggregate, stream, conn)
        facts = loaded.state.facts
        if facts is None:
            raise Problem.not_found("no dose is recorded under this id")
        principal.require_site(facts.site_id)
        await readmodel.lock_citizen(conn, facts.citizen_id)
        loaded = await store.load_state(aggregate, stream, conn)  # as of the lock
        if expected is not None and loaded.version != expected:
            raise ConcurrencyConflict(stream, expected)
        command = await command_for(conn, loaded.state)
        outcome = await store.decide_and_append(
            conn, aggregate, stream, loaded, command, metadata=metadata
        )
        await _apply(conn, outcome.events, aggregate.context)
        return outcome

    try:
        return await store.transact(
            work, attempts=COMMAND_ATTEMPTS, retry_conflicts=expected is None
        )
    except DoseRefused as error:
        raise _refused(request, error) from error


@api.post(
    "/v1/doses/{dose_id}/corrections",
    body=CorrectDose,
    responses={200: DoseView, 403: None, 404: None, 409: None, 412: None, 422: None},
    roles=RECORDERS,
    idempotent=True,
    summary="Correct a dose record",
)
async def correct_dose(request: web.Request, body: CorrectDose) -> web.StreamResponse:
    """Re-state what was recorded wrongly (fields left out keep their value) with a reason;
    the record is checked by the same rules as a new dose, this dose aside. The history
    keeps the original. A voided dose cannot be corrected (409 `dose_voided`); a
    correction that changes nothing records nothing."""
    principal = require_principal(request)
    _require_override_right(principal, body.override_reason)
    if not isinstance(body.administered_at, UnsetType):
        _require_past("administered_at", body.administered_at)
    catalog = vaccine_catalog()

    async def command_for(conn: Connection, state: DoseState) -> Correct | Void:
        current = state.facts
        assert current is not None
        request_after = DoseRequest(
            citizen_id=current.citizen_id,
            site_id=current.site_id,
            lot_number=_given(body.lot_number, current.lot_number),
            product_code=_given(body.product_code, current.product_code),
            dose_number=_given(body.dose_number, current.dose_number),
            administered_at=_given(body.administered_at, current.administered_at),
        )
        citizen = await readmodel.fetch_citizen(conn, current.citizen_id)
        lot = await readmodel.fetch_lot(conn, request_after.lot_number, current.site_id)
        history = await readmodel.fetch_history(conn, current.citizen_id, excluding=current.dose_id)
        violations = check_dose(request_after, citizen, lot, history, catalog)
        refuse_unrecordable(violations)
        assert citizen is not None
        facts = _facts(
            dose_id=current.dose_id,
            request=request_after,
            citizen=citizen,
            series_length=catalog[request_after.product_code].series_length,
            site_municipality_code=current.site_municipality_code,
            vaccinator_id=_given(body.vaccinator_id, current.vaccinator_id),
            appointment_id=_given(body.appointment_id, current.appointment_id),
            injection_site=_given(body.injection_site, current.injection_site),
        )
        # The citizen's municipality and sex at the time stay as first recorded.
        facts = msgspec.structs.replace(
            facts, citizen_municipality_code=current.citizen_municipality_code, sex=current.sex
        )
        return Correct(
            facts=facts,
            reason=body.reason,
            violations=violations,
            override_reason=body.override_reason,
            may_override=principal.role is Role.ADMIN,
        )

    outcome = await _change_dose(request, command_for)
    if outcome.events:
        request.app[COUNTERS].corrections.inc()
    return await _dose_response(request, request.match_info["dose_id"])


@api.post(
    "/v1/doses/{dose_id}/void",
    body=VoidDose,
    responses={200: DoseView, 403: None, 404: None, 412: None, 422: None},
    roles=RECORDERS,
    idempotent=True,
    summary="Void a dose record (entered in error)",
)
async def void_dose(request: web.Request, body: VoidDose) -> web.StreamResponse:
    """Mark the record entered in error, with a reason. Nothing is deleted: the record
    stays, with status `entered-in-error`, in the citizen's history and FHIR bundle.
    Voiding again changes nothing."""

    async def command_for(conn: Connection, state: DoseState) -> Correct | Void:
        return Void(reason=body.reason)

    outcome = await _change_dose(request, command_for)
    if outcome.events:
        request.app[COUNTERS].voids.inc()
    return await _dose_response(request, request.match_info["dose_id"])


# --- reading --------------------------------------------------------------------------------


@api.get(
    "/v1/citizens/{citizen_id}/doses",
    responses={200: CitizenDoses, 403: None, 404: None, 410: None},
    roles=READERS,
    summary="A citizen's recorded doses",
)
async def citizen_doses(request: web.Request) -> web.StreamResponse:
    """Every dose recorded for the citizen, voided ones included (status says so), with
    adverse events reported against them. 410 once the citizen's data is erased."""
    principal = require_principal(request)
    citizen_id = request.match_info["citizen_id"]
    principal.require_own(citizen_id, OTHER_CITIZEN)
    _, doses = await _citizen_doses(request, citizen_id)
    return json_response(CitizenDoses(citizen_id=citizen_id, doses=doses))


@api.get(
    "/v1/citizens/{citizen_id}/fhir",
    responses={200: Media({"application/fhir+json": fhir.Bundle}), 403: None, 404: None, 410: None},
    roles=READERS,
    summary="A citizen's record as an HL7 FHIR R4 Bundle",
)
async def citizen_fhir(request: web.Request) -> web.StreamResponse:
    """A FHIR R4 `collection` Bundle (`application/fhir+json`): the Patient (citizen id,
    birth date, gender: no names, administration holds none) and one Immunization per
    dose, `completed` or `entered-in-error`."""
    principal = require_principal(request)
    citizen_id = request.match_info["citizen_id"]
    principal.require_own(citizen_id, OTHER_CITIZEN)
    citizen, doses = await _citizen_doses(request, citizen_id)
    bundle = fhir.citizen_bundle(
        fhir.PatientData(citizen_id, citizen.birth_date, citizen.sex),
        doses,
        vaccine_catalog(),
        now=datetime.now(UTC),
    )
    return web.Response(body=fhir.encode(bundle), headers={"Content-Type": fhir.FHIR_CONTENT_TYPE})


# --- adverse events -------------------------------------------------------------------------


@api.post(
    "/v1/adverse-events",
    body=ReportAdverseEvent,
    responses={201: AdverseEventRecorded, 403: None, 404: None, 409: None, 422: None},
    roles=READERS,
    idempotent=True,
    summary="Report an adverse event following immunization",
)
async def report_adverse_event(
    request: web.Request, body: ReportAdverseEvent
) -> web.StreamResponse:
    """Report symptoms, onset, seriousness and outcome against a recorded dose. Site
    staff of any site and admins report; a citizen may report against their own dose.
    The onset cannot precede the dose (422 `onset_before_dose`); a voided dose takes no
    reports (409 `dose_voided`)."""
    principal = require_principal(request)
    report_id = str(new_event_id())
    store = request.app[STORE_KEY]
    aggs = request.app[AGGREGATES]
    metadata = metadata_from_request(request)

    async def work(conn: Connection) -> None:
        dose = await store.load_state(aggs.dose, dose_stream(body.dose_id), conn)
        if dose.state.facts is None:
            raise Problem.not_found("no dose is recorded under this id")
        principal.require_own(dose.state.facts.citizen_id, OTHER_CITIZEN)
        command = ReportCommand(
            report_id=report_id,
            dose=dose.state,
            symptoms=list(body.symptoms),
            onset_at=body.onset_at,
            serious=body.serious,
            outcome=body.outcome,
            reporter_role=principal.role.value,
            description=body.description,
            now=datetime.now(UTC),
        )
        outcome = await store.execute_in(
            conn, aggs.adverse_event, report_stream(report_id), command, metadata=metadata
        )
        await _apply(conn, outcome.events, aggs.adverse_event.context)

    await store.transact(work, attempts=COMMAND_ATTEMPTS)
    request.app[COUNTERS].adverse_events.labels(str(body.serious).lower()).inc()
    return json_response(AdverseEventRecorded(report_id), status=201)


def _given(value: T | UnsetType, default: T) -> T:
    return default if isinstance(value, UnsetType) else value


service = Service(
    name="administration",
    api=api,
    publishes=CONTEXT,
    schema_files=[Path(__file__).with_name("schema.sql")],
    reactions=reactions,
    resources=[administration_resources],
    demo=load_demo,
)
