"""Administration: sites record every dose, correct or void it, report adverse events;
citizens and clinicians fetch the record as FHIR (port 8084).

Routes only: each decodes the request, calls a command or query of handlers.py
(where every command and reaction is, and how each runs in one transaction) and
encodes the answer; the rules are in domain.py and rules.py. Every check reads this
service's own read models, never another service.

The same dose sent twice is recorded once: with the same Idempotency-Key the first
answer is replayed (201); without one, the dose id (derived from citizen, lot, dose
number and time) names a stream that already exists and the answer is 200 with the
same id. A dose voided since is a 409 (`dose_voided`).

Who may do what:
- record: `site_staff` at their own site (403 `other_site` elsewhere), `admin`
  anywhere; only `admin` may send `override_reason` (403 `override_not_allowed`);
- correct, void: `admin`, or `site_staff` of the site that recorded the dose;
- read doses and FHIR: the citizen their own, `admin` any, `site_staff` a citizen
  with a dose recorded at their site, or another when they state why (`Access-Reason`:
  the clinician at the chair needs the history of a citizen new to the site);
  `public_health` and `logistics` nothing personal; every read is audited;
- report an adverse event: `site_staff` (any site: the clinician who sees the
  reaction may be elsewhere), `admin`, and the citizen for their own dose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from prometheus_client import Counter

from immunreg import audit
from immunreg.contracts.administration import CONTEXT
from immunreg.eventstore.store import EventStore
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, STORE_KEY
from immunreg.http.auth import Reach, Role, require_principal
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.middleware import metadata_from_request
from immunreg.http.openapi import Media
from immunreg.http.problems import FieldError, Problem
from immunreg.http.versioning import etag, if_match_version
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.service import Service

from . import fhir, handlers, readmodel
from .demo import load as load_demo
from .domain import Aggregates, DoseRefused, NotYetHappened, aggregates
from .handlers import (
    OTHER_CITIZEN,
    CitizenNotFound,
    DoseNotFound,
    PostgresBooks,
    reactions,
)
from .schemas import (
    AdverseEventRecorded,
    CitizenDoses,
    CorrectDose,
    DoseRecorded,
    DoseView,
    RecordDose,
    ReportAdverseEvent,
    VoidDose,
)

api = Api(
    "administration",
    "1.0.0",
    "Vaccination sites record every dose, correct or void records (never deleted), report "
    "adverse events following immunization; a citizen's record is served as HL7 FHIR R4.",
)

EVENTS_CONTEXT_SETTING = "EVENTS_CONTEXT"
"""`Settings.extra` key: publish under another context name (benchmarks, never production)."""

RECORDERS = {Role.SITE_STAFF, Role.ADMIN}
# Reading a citizen's doses and FHIR record: site staff reach a citizen vaccinated at
# their site, or another with a stated reason (audit.citizen_read).
READERS = {Role.CITIZEN: Reach.OWN, Role.SITE_STAFF: Reach.LINKED, Role.ADMIN: Reach.ANY}
# Reporting an adverse event: the clinician who sees the reaction may be at any site.
REPORTERS = {Role.CITIZEN: Reach.OWN, Role.SITE_STAFF: Reach.ANY, Role.ADMIN: Reach.ANY}


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


# --- from refusals to answers ---------------------------------------------------------------

BOOKS = PostgresBooks()

# An erased citizen (DetailsErased, 410 `citizen_erased`) is the shared PersonalDataErased:
# the domain middleware shapes it as Problem.citizen_erased(), for reads as for writes.
Refusal = DoseRefused | NotYetHappened | DoseNotFound | CitizenNotFound


def _problem(request: web.Request, error: Refusal) -> Problem:
    """The problem+json for a refusal the domain middleware does not shape itself."""
    if isinstance(error, DoseRefused):
        request.app[COUNTERS].refusals.labels(error.code).inc()
        return Problem.unprocessable(
            error.message,
            code=error.code,
            errors=[
                FieldError(f"body.{v.field}", f"{v.code}: {v.message}") for v in error.violations
            ],
        )
    if isinstance(error, NotYetHappened):
        return Problem.unprocessable(
            errors=[FieldError(f"body.{error.field}", error.message)], code=error.code
        )
    if isinstance(error, DoseNotFound):
        return Problem.not_found("no dose is recorded under this id")
    return Problem.not_found("no citizen is known under this id")


async def _dose_response(request: web.Request, dose_id: str) -> web.Response:
    """The dose as it stands, with its ETag."""
    try:
        view = await handlers.read_dose(request.app[POOL_KEY], dose_id, vaccine_catalog())
    except DoseNotFound as error:
        raise _problem(request, error) from error
    return json_response(view, headers={"ETag": etag(view.version)})


def _store(request: web.Request) -> EventStore:
    return request.app[STORE_KEY]


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
    try:
        recording = await handlers.record_dose(
            _store(request),
            BOOKS,
            request.app[AGGREGATES],
            body,
            caller=require_principal(request),
            catalog=vaccine_catalog(),
            now=datetime.now(UTC),
            metadata=metadata_from_request(request),
        )
    except (DoseRefused, NotYetHappened) as error:
        raise _problem(request, error) from error
    headers = {"Location": f"/v1/doses/{recording.dose_id}"}
    if not recording.created:
        return json_response(DoseRecorded(recording.dose_id), status=200, headers=headers)
    counters = request.app[COUNTERS]
    facts = recording.state.facts
    booster = facts is not None and facts.booster
    counters.doses.labels(body.product_code, str(booster).lower()).inc()
    for rule in recording.state.overridden_rules:
        counters.overrides.labels(rule).inc()
    headers["ETag"] = etag(recording.version)
    return json_response(DoseRecorded(recording.dose_id), status=201, headers=headers)


@api.get(
    "/v1/doses/{dose_id}",
    responses={200: DoseView, 403: None, 404: None, 410: None},
    roles=READERS,
    summary="Read one recorded dose",
)
async def read_dose(request: web.Request) -> web.StreamResponse:
    """The dose as it stands (corrections applied), with its ETag for If-Match. 410
    `citizen_erased` once the citizen's data is erased, as for their record."""
    principal = require_principal(request)
    pool = request.app[POOL_KEY]
    try:
        view = await handlers.read_dose(pool, request.match_info["dose_id"], vaccine_catalog())
    except DoseNotFound as error:
        raise _problem(request, error) from error
    principal.require_own(view.citizen_id, OTHER_CITIZEN)
    await audit.citizen_read(request, view.citizen_id, resource_id=view.dose_id)
    # After the caller's right is checked: only who may read the dose learns of the erasure.
    await handlers.refuse_if_erased(pool, view.citizen_id)
    return json_response(view, headers={"ETag": etag(view.version)})


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
    dose_id = request.match_info["dose_id"]
    try:
        outcome = await handlers.correct_dose(
            _store(request),
            BOOKS,
            request.app[AGGREGATES],
            dose_id,
            body,
            caller=require_principal(request),
            catalog=vaccine_catalog(),
            now=datetime.now(UTC),
            expected_version=if_match_version(request),
            metadata=metadata_from_request(request),
        )
    except (DoseRefused, NotYetHappened, DoseNotFound) as error:
        raise _problem(request, error) from error
    if outcome.events:
        request.app[COUNTERS].corrections.inc()
    return await _dose_response(request, dose_id)


@api.post(
    "/v1/doses/{dose_id}/void",
    body=VoidDose,
    responses={200: DoseView, 403: None, 404: None, 410: None, 412: None, 422: None},
    roles=RECORDERS,
    idempotent=True,
    summary="Void a dose record (entered in error)",
)
async def void_dose(request: web.Request, body: VoidDose) -> web.StreamResponse:
    """Mark the record entered in error, with a reason. Nothing is deleted: the record
    stays, with status `entered-in-error`, in the citizen's history and FHIR bundle.
    Voiding again changes nothing. An erased citizen's dose is not voided (410
    `citizen_erased`: the reason could be sealed under no key of theirs)."""
    dose_id = request.match_info["dose_id"]
    try:
        outcome = await handlers.void_dose(
            _store(request),
            BOOKS,
            request.app[AGGREGATES],
            dose_id,
            body,
            caller=require_principal(request),
            expected_version=if_match_version(request),
            metadata=metadata_from_request(request),
        )
    except DoseNotFound as error:
        raise _problem(request, error) from error
    if outcome.events:
        request.app[COUNTERS].voids.inc()
    return await _dose_response(request, dose_id)


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
    await audit.citizen_read(request, citizen_id)
    try:
        _, record = await handlers.read_citizen_record(
            request.app[POOL_KEY], citizen_id, vaccine_catalog()
        )
    except CitizenNotFound as error:
        raise _problem(request, error) from error
    return json_response(record)


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
    await audit.citizen_read(request, citizen_id)
    catalog = vaccine_catalog()
    try:
        citizen, record = await handlers.read_citizen_record(
            request.app[POOL_KEY], citizen_id, catalog
        )
    except CitizenNotFound as error:
        raise _problem(request, error) from error
    bundle = fhir.citizen_bundle(
        fhir.PatientData(citizen_id, citizen.birth_date, citizen.sex),
        record.doses,
        catalog,
        now=datetime.now(UTC),
    )
    return web.Response(body=fhir.encode(bundle), headers={"Content-Type": fhir.FHIR_CONTENT_TYPE})


# --- adverse events -------------------------------------------------------------------------


@api.post(
    "/v1/adverse-events",
    body=ReportAdverseEvent,
    responses={
        201: AdverseEventRecorded,
        403: None,
        404: None,
        409: None,
        410: None,
        422: None,
    },
    roles=REPORTERS,
    idempotent=True,
    summary="Report an adverse event following immunization",
)
async def report_adverse_event(
    request: web.Request, body: ReportAdverseEvent
) -> web.StreamResponse:
    """Report symptoms, onset, seriousness and outcome against a recorded dose. Site
    staff of any site and admins report; a citizen may report against their own dose.
    The onset cannot precede the dose (422 `onset_before_dose`); a voided dose takes no
    reports (409 `dose_voided`), nor does an erased citizen's (410 `citizen_erased`).
    What was reported travels sealed under the citizen's key (keys.py)."""
    try:
        report_id = await handlers.report_adverse_event(
            _store(request),
            BOOKS,
            request.app[AGGREGATES],
            body,
            caller=require_principal(request),
            now=datetime.now(UTC),
            metadata=metadata_from_request(request),
        )
    except DoseNotFound as error:
        raise _problem(request, error) from error
    request.app[COUNTERS].adverse_events.labels(str(body.serious).lower()).inc()
    return json_response(AdverseEventRecorded(report_id), status=201)


service = Service(
    name="administration",
    api=api,
    publishes=CONTEXT,
    schema_files=[Path(__file__).with_name("schema.sql")],
    reactions=reactions,
    resources=[administration_resources],
    demo=load_demo,
    citizen_at_site=readmodel.citizen_at_site,
)
