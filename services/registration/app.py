"""Registration: citizens register interest in vaccination (port 8081).

Every command runs in one transaction: load the Citizen stream, unseal or
seal personal data with the citizen's key, decide, append the events (and
their outbox rows), store or destroy the key, update the `citizens` read
model. A conflicting append rolls all of it back and the command is decided
again. A registration also writes the national-id index (a keyed hash of the
national id, unique, to the random citizen id) in that transaction, so a second
registration of one national id is a 409 under any concurrency. A first registration
(a national id never indexed) is all of that in one statement, decided for a new random
id before anything is read (handlers.run_registration).

Who may do what:
- register: `citizen` (only the id its token is bound to), `site_staff`
  (a health worker on the citizen's behalf), `admin` (e.g. the call centre);
- read: the citizen their own record, `admin` any record, `site_staff` a
  reduced view (name, birth date, conditions) of a citizen booked or vaccinated at
  their site (`citizen_sites`, fed by booking's and administration's events), or of
  another when they state why (`Access-Reason`); every read is audited;
- update (If-Match required) and withdraw: the citizen or `admin`;
- erase: `admin` only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType
from prometheus_client import Counter

from immunreg import audit
from immunreg.contracts import certificates, notifications
from immunreg.contracts.common import Sealed
from immunreg.contracts.registration import (
    CONTEXT,
    Consent,
    ContactDetailsChanged,
    HealthData,
    PersonalData,
    PreferencesChanged,
)
from immunreg.domain import Loaded, Outcome
from immunreg.eventstore.database import Connection
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, STORE_KEY
from immunreg.http.auth import Principal, Reach, Role, current_principal, require_principal
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.middleware import metadata_from_request
from immunreg.http.problems import FieldError, Problem
from immunreg.http.versioning import etag, if_match_version
from immunreg.messaging.reactions import Provided
from immunreg.observability.metrics import Metrics
from immunreg.sealing import CitizenKey
from immunreg.service import Resource, Service

from . import contacts, handlers, readmodel
from .contacts import (
    SIGN_IN_KEY,
    seal_health,
    seal_personal,
    sign_in_resources,
    unseal_health,
    unseal_personal,
)
from .demo import load as load_demo
from .domain import (
    CitizenState,
    Erase,
    Preferences,
    Register,
    Update,
    Withdraw,
    require_active,
)
from .handlers import AlreadyRegistered, PostgresBooks, Prepare, Prepared
from .keys import (
    KeyRing,
    check_id_key,
    fetch_citizen_key,
    is_citizen_id,
    load_key_ring,
    unwrap_citizen_key,
)
from .pooled import PooledKeys
from .rules import (
    Contact,
    Violation,
    changes_contact,
    check_registration,
    check_update,
    contact_after,
    normalize_email,
    normalize_name,
    normalize_phone,
    preferences_named,
    reference_rules,
)
from .schemas import (
    CitizenRecord,
    CitizenView,
    RegisterCitizen,
    Registered,
    SignInCodeAccepted,
    SignInCodeRequest,
    SignInToken,
    SignInTokenRequest,
    UpdateCitizen,
    VaccinationView,
    WithdrawQuery,
)

# What a citizen is told on asking for another citizen's record (403 other_citizen).
OTHER_CITIZEN = "a citizen may act only on their own record"

api = Api(
    "registration",
    "1.0.0",
    "Citizens register interest in vaccination, keep their details current, withdraw; "
    "personal data is sealed per citizen and erasable (crypto-shredding).",
)

CHANNELS = {Role.CITIZEN: "online", Role.SITE_STAFF: "health_worker", Role.ADMIN: "admin"}

_sealed_decoder = msgspec.json.Decoder(Sealed)
_consent_decoder = msgspec.json.Decoder(Consent)


@dataclass(frozen=True)
class RegistrationMetrics:
    """Domain counters (created once per app)."""

    registrations: Counter
    duplicates: Counter
    updates: Counter
    withdrawals: Counter
    erasures: Counter


KEYS = web.AppKey("registration_keys", KeyRing)
COUNTERS = web.AppKey("registration_metrics", RegistrationMetrics)
POOLED = web.AppKey("registration_pooled_keys", PooledKeys)
# The holders whose pooled keys a first registration grants its data key to.
HOLDERS = (certificates.CONTEXT.name, notifications.CONTEXT.name)


def registration_resources(granting: Provided[handlers.Granting]) -> Resource:
    """Load the keys (refusing a foreign id key), create the domain counters and give the
    grant reactions the store and keys."""

    async def registration_keys(app: web.Application) -> AsyncIterator[None]:
        ring = load_key_ring(app[SETTINGS_KEY])
        await check_id_key(app[POOL_KEY], ring)
        app[KEYS] = ring
        app[COUNTERS] = _counters(app[METRICS_KEY])
        app[POOLED] = PooledKeys(app[POOL_KEY], HOLDERS)
        async with granting.providing(handlers.Granting(app[STORE_KEY], ring)):
            yield

    return registration_keys


def _counters(metrics: Metrics) -> RegistrationMetrics:
    return RegistrationMetrics(
        registrations=metrics.counter(
            "immunreg_registrations_total",
            "Citizens registered, by priority group and channel.",
            ["priority_group", "channel"],
        ),
        duplicates=metrics.counter(
            "immunreg_registration_duplicates_total",
            "Registrations refused because the national id is already registered.",
        ),
        updates=metrics.counter(
            "immunreg_registration_updates_total",
            "Registrations changed, by what changed (contact, preferences).",
            ["change"],
        ),
        withdrawals=metrics.counter(
            "immunreg_registration_withdrawals_total", "Registrations withdrawn."
        ),
        erasures=metrics.counter(
            "immunreg_registration_erasures_total", "Citizens erased (keys destroyed)."
        ),
    )


# --- the command path -------------------------------------------------------------------


async def run_command(
    request: web.Request,
    citizen_id: str,
    prepare: Prepare[Connection],
    *,
    expected_version: int | None = None,
) -> Outcome[CitizenState]:
    """The command path (handlers.run_command) on the service's store, keys and read model."""
    store = request.app[STORE_KEY]
    return await handlers.run_command(
        store,
        PostgresBooks(request.app[KEYS], store),
        citizen_id,
        prepare,
        metadata=metadata_from_request(request),
        expected_version=expected_version,
    )


def _problem_422(violations: list[Violation]) -> Problem:
    return Problem.unprocessable(
        errors=[FieldError(f"body.{v.field}", v.reason) for v in violations],
        code="invalid_fields",
    )


def _citizen_id(request: web.Request) -> str:
    citizen_id = request.match_info["citizen_id"]
    if not is_citizen_id(citizen_id):
        raise Problem.not_found("no citizen is registered under this id")
    return citizen_id


# --- routes -----------------------------------------------------------------------------


@api.post(
    "/v1/citizens",
    body=RegisterCitizen,
    responses={201: Registered, 403: None, 409: None, 422: None, 429: None},
    # Public: a person registers first and signs in after (the citizens' portal), so
    # anonymous callers are let in, limited per client address (docs/security.md).
    roles=None,
    rate_limited=True,
    idempotent=True,
    summary="Register interest in vaccination",
)
async def register_citizen(request: web.Request, body: RegisterCitizen) -> web.StreamResponse:
    """Register a citizen, with or without a token (anonymous: the citizens' portal,
    limited per client address). A new citizen gets a random id; the national-id index
    (a keyed hash, unique) finds an earlier registration, so a second registration of one
    national id is a 409 even under concurrent requests, and registering again after a
    withdrawal keeps the id; the 409 names the existing id to admins only. Every bad
    field is reported in one 422; nothing is stored on any error. A citizen token may
    register only the id it is bound to."""
    principal = current_principal(request)
    rules = reference_rules()
    violations = check_registration(body, date.today(), rules)
    if violations:
        raise _problem_422(violations)
    ring = request.app[KEYS]
    national_id = body.national_id.strip()
    personal = PersonalData(
        national_id=national_id,
        given_name=normalize_name(body.given_name),
        family_name=normalize_name(body.family_name),
        phone=normalize_phone(body.phone) if body.phone is not None else None,
        email=normalize_email(body.email) if body.email is not None else None,
    )
    preferences = Preferences(
        priority_group=body.priority_group,
        conditions=body.conditions,
        vaccine_preferences=body.vaccine_preferences,
        preferred_municipality_code=body.preferred_municipality_code,
        language=body.language,
    )
    channel = CHANNELS.get(principal.role, principal.role.value) if principal else "online"

    def prepare_for(citizen_id: str) -> Prepare[Connection]:
        async def prepare(conn: Connection, loaded: Loaded[CitizenState]) -> Prepared:
            if principal is not None:
                principal.require_own(
                    citizen_id, "a citizen token may register only its own national id"
                )
            key: CitizenKey | None = None
            if loaded.state.status == "withdrawn":
                key = await fetch_citizen_key(conn, ring, citizen_id)  # registering again
            fresh = CitizenKey.new() if key is None else None
            key = key or fresh
            assert key is not None
            command = Register(
                citizen_id=citizen_id,
                birth_date=body.birth_date,
                sex=body.sex,
                municipality_code=body.municipality_code,
                preferences=preferences,
                consent=body.consent,
                channel=channel,
                personal=seal_personal(key, citizen_id, personal),
                health=seal_health(key, citizen_id, HealthData(conditions=body.conditions)),
            )
            return Prepared(command, new_key=fresh)

        return prepare

    counters = request.app[COUNTERS]
    store = request.app[STORE_KEY]
    try:
        citizen_id, outcome = await handlers.run_registration(
            store,
            PostgresBooks(ring, store),
            ring.national_id_hash(national_id),
            prepare_for,
            legacy_id=ring.legacy_citizen_id(national_id),
            metadata=metadata_from_request(request),
            pooled=request.app[POOLED],
        )
    except AlreadyRegistered as error:
        counters.duplicates.inc()
        detail = "this national id is already registered"
        if principal is not None and principal.role is Role.ADMIN:
            detail += f" as citizen {error.citizen_id}"
        raise Problem.conflict(detail, code=error.code) from error
    counters.registrations.labels(body.priority_group, channel).inc()
    return json_response(
        Registered(citizen_id),
        status=201,
        headers={"Location": f"/v1/citizens/{citizen_id}", "ETag": etag(outcome.version)},
    )


@api.get(
    "/v1/citizens/{citizen_id}",
    responses={200: CitizenView, 403: None, 404: None, 410: None},
    roles={Role.CITIZEN: Reach.OWN, Role.SITE_STAFF: Reach.LINKED, Role.ADMIN: Reach.ANY},
    summary="Read a registration",
)
async def read_citizen(request: web.Request) -> web.StreamResponse:
    """The citizen's own record (citizen token) or any record (admin), with its ETag;
    site staff get the vaccination view (name, birth date, conditions) only, of a citizen
    booked or vaccinated at their site, or of another with an `Access-Reason`. Every
    read is audited. 410 once the citizen's personal data is erased."""
    principal = require_principal(request)
    citizen_id = _citizen_id(request)
    principal.require_own(citizen_id, OTHER_CITIZEN)
    await audit.citizen_read(request, citizen_id)
    view, version = await _current_view(request, citizen_id, principal)
    return json_response(view, headers={"ETag": etag(version)})


async def _current_view(
    request: web.Request, citizen_id: str, principal: Principal
) -> tuple[CitizenView, int]:
    row = await readmodel.fetch_citizen(request.app[POOL_KEY], citizen_id)
    if row is None:
        raise Problem.not_found("no citizen is registered under this id")
    if row["status"] == "erased":
        raise Problem.citizen_erased()
    if row["key_id"] is None:
        raise RuntimeError(f"citizen {citizen_id} has no data key but is not erased")
    key = unwrap_citizen_key(request.app[KEYS], citizen_id, row["key_id"], row["wrapped_key"])
    personal = unseal_personal(key, citizen_id, _sealed_decoder.decode(row["personal"]))
    conditions = list(row["conditions"] or ())  # in clear only from events before `health`
    if row["health"] is not None:
        health = _sealed_decoder.decode(row["health"])
        conditions = unseal_health(key, citizen_id, health).conditions
    view: CitizenView
    if principal.role is Role.SITE_STAFF:
        view = VaccinationView(
            citizen_id=citizen_id,
            status=row["status"],
            given_name=personal.given_name,
            family_name=personal.family_name,
            birth_date=row["birth_date"],
            conditions=conditions,
        )
    else:
        view = CitizenRecord(
            citizen_id=citizen_id,
            status=row["status"],
            version=row["version"],
            national_id=personal.national_id,
            given_name=personal.given_name,
            family_name=personal.family_name,
            birth_date=row["birth_date"],
            sex=row["sex"],
            municipality_code=row["municipality_code"],
            phone=personal.phone,
            email=personal.email,
            priority_group=row["priority_group"],
            conditions=conditions,
            vaccine_preferences=list(row["vaccine_preferences"]),
            preferred_municipality_code=row["preferred_municipality_code"],
            consent=_consent_decoder.decode(row["consent"]),
            channel=row["channel"],
            registered_at=row["registered_at"],
            updated_at=row["updated_at"],
            language=row["language"],
        )
    return view, int(row["version"])


@api.patch(
    "/v1/citizens/{citizen_id}",
    body=UpdateCitizen,
    responses={200: CitizenRecord, 403: None, 404: None, 409: None, 412: None, 428: None},
    roles={Role.CITIZEN, Role.ADMIN},
    summary="Change contact details or preferences",
)
async def update_citizen(request: web.Request, body: UpdateCitizen) -> web.StreamResponse:
    """Change phone, e-mail, priority group, conditions, vaccine preferences or the
    preferred municipality. Needs `If-Match` with the ETag read (428 without, 412 when
    stale). A withdrawn or erased registration cannot change (409)."""
    principal = require_principal(request)
    citizen_id = _citizen_id(request)
    principal.require_own(citizen_id, OTHER_CITIZEN)
    expected = if_match_version(request, required=True)
    ring = request.app[KEYS]
    rules = reference_rules()

    async def prepare(conn: Connection, loaded: Loaded[CitizenState]) -> Prepared:
        require_active(loaded.state)
        key = await fetch_citizen_key(conn, ring, citizen_id)
        if key is None or loaded.state.personal is None:
            raise RuntimeError(f"active citizen {citizen_id} has no data key")
        # The rules judge the values after the update, so they see the conditions unsealed.
        current = loaded.state.preferences
        if loaded.state.health is not None:
            health = unseal_health(key, citizen_id, loaded.state.health)
            current = msgspec.structs.replace(current, conditions=health.conditions)
        contact: Contact | None = None
        personal: PersonalData | None = None
        if changes_contact(body):
            personal = unseal_personal(key, citizen_id, loaded.state.personal)
            contact = Contact(personal.phone, personal.email)
        state = msgspec.structs.replace(loaded.state, preferences=current)
        violations = check_update(body, state, contact, rules)
        if violations:
            raise _problem_422(violations)
        sealed: Sealed | None = None
        if contact is not None and personal is not None:
            after = contact_after(body, contact)
            if after != contact:
                changed = msgspec.structs.replace(personal, phone=after.phone, email=after.email)
                sealed = seal_personal(key, citizen_id, changed)
        conditions, sealed_health = _conditions_change(body, loaded.state, current.conditions)
        return Prepared(
            Update(
                citizen_id=citizen_id,
                personal=sealed,
                priority_group=body.priority_group,
                conditions=conditions,
                health=(
                    None
                    if sealed_health is None
                    else seal_health(key, citizen_id, HealthData(conditions=sealed_health))
                ),
                vaccine_preferences=body.vaccine_preferences,
                preferred_municipality_code=body.preferred_municipality_code,
                language=body.language,
            )
        )

    outcome = await run_command(request, citizen_id, prepare, expected_version=expected)
    counters = request.app[COUNTERS]
    for envelope in outcome.events:
        if envelope.type == ContactDetailsChanged.type_name():
            counters.updates.labels("contact").inc()
        elif envelope.type == PreferencesChanged.type_name():
            counters.updates.labels("preferences").inc()
    view, version = await _current_view(request, citizen_id, principal)
    return json_response(view, headers={"ETag": etag(version)})


def _conditions_change(
    body: UpdateCitizen, state: CitizenState, current: list[str]
) -> tuple[list[str] | UnsetType, list[str] | None]:
    """The conditions the Update names and the ones to seal into it: named only when they
    change; and for a registration whose conditions older events carried in clear, with
    any preference change, so they are sealed from then on."""
    legacy = state.health is None and bool(state.preferences.conditions)
    if not isinstance(body.conditions, UnsetType) and (legacy or body.conditions != current):
        return body.conditions, body.conditions
    if legacy and preferences_named(body):
        return current, current
    return UNSET, None


@api.delete(
    "/v1/citizens/{citizen_id}",
    query=WithdrawQuery,
    responses={204: None, 403: None, 404: None, 409: None, 412: None},
    roles={Role.CITIZEN, Role.ADMIN},
    summary="Withdraw a registration",
)
async def withdraw_citizen(request: web.Request, query: WithdrawQuery) -> web.StreamResponse:
    """Withdraw: no more appointments are offered. Withdrawing again changes nothing;
    registering again re-activates the record. `If-Match` is honoured when sent."""
    principal = require_principal(request)
    citizen_id = _citizen_id(request)
    principal.require_own(citizen_id, OTHER_CITIZEN)
    expected = if_match_version(request)
    reason = query.reason.strip()[:500] if query.reason else None
    ring = request.app[KEYS]

    async def prepare(conn: Connection, loaded: Loaded[CitizenState]) -> Prepared:
        sealed: Sealed | None = None
        if reason and loaded.state.status == "active":
            key = await fetch_citizen_key(conn, ring, citizen_id)
            if key is None:
                raise RuntimeError(f"active citizen {citizen_id} has no data key")
            sealed = seal_health(key, citizen_id, HealthData(withdrawal_reason=reason))
        return Prepared(Withdraw(citizen_id=citizen_id, reason=sealed))

    outcome = await run_command(request, citizen_id, prepare, expected_version=expected)
    if outcome.events:
        request.app[COUNTERS].withdrawals.inc()
    return web.Response(status=204, headers={"ETag": etag(outcome.version)})


@api.post(
    "/v1/citizens/{citizen_id}/erase",
    responses={204: None, 404: None},
    roles={Role.ADMIN},
    summary="Erase a citizen's personal data (right to erasure)",
)
async def erase_citizen(request: web.Request) -> web.StreamResponse:
    """Destroy the citizen's data key: every sealed field in the event history becomes
    unreadable, the read model drops the citizen's data, and `CitizenErased` tells other
    services to drop theirs. An active registration is withdrawn first. Erasing again
    changes nothing."""
    citizen_id = _citizen_id(request)

    async def prepare(conn: Connection, loaded: Loaded[CitizenState]) -> Prepared:
        return Prepared(Erase(citizen_id=citizen_id))

    outcome = await run_command(request, citizen_id, prepare)
    if outcome.events:
        request.app[COUNTERS].erasures.inc()
    return web.Response(status=204)


# --- sign-in (contacts.py): a one-time code to the registered phone or e-mail -------------


@api.post(
    "/v1/sign-in/codes",
    body=SignInCodeRequest,
    responses={202: SignInCodeAccepted, 422: None, 429: None},
    rate_limited=True,
    summary="Send a one-time sign-in code to a registered phone or e-mail",
)
async def request_sign_in_code(request: web.Request, body: SignInCodeRequest) -> web.StreamResponse:
    """Always 202, so the answer never tells whether the contact is registered; when it
    belongs to an active registration a 6-digit code (valid 5 minutes, 5 tries) is sent
    there by SMS or e-mail. Limited per contact and per client address (429, Retry-After)."""
    await contacts.request_code(request.app[SIGN_IN_KEY], request.app[POOL_KEY], body.contact)
    return json_response(SignInCodeAccepted(), status=202)


@api.post(
    "/v1/sign-in/tokens",
    body=SignInTokenRequest,
    responses={200: SignInToken, 422: None, 429: None},
    rate_limited=True,
    summary="Exchange a one-time code for a citizen token",
)
async def exchange_sign_in_code(
    request: web.Request, body: SignInTokenRequest
) -> web.StreamResponse:
    """A correct code gives a short-lived `citizen` token for that citizen only; a wrong,
    expired or used-up code is a 422 `invalid_code` (each wrong try costs one of five)."""
    sign_in = request.app[SIGN_IN_KEY]
    citizen_id, token = await contacts.exchange_code(
        sign_in, request.app[POOL_KEY], body.contact, body.code
    )
    lifetime = int(sign_in.signer.lifetime.total_seconds())
    return json_response(
        SignInToken(access_token=token, expires_in=lifetime, citizen_id=citizen_id),
        headers={"Cache-Control": "no-store"},
    )


def build_service() -> Service:
    """A fresh registration Service (its reactions bound to the app it is started in)."""
    granting: Provided[handlers.Granting] = Provided("registration's store and keys")
    return Service(
        name="registration",
        api=api,
        publishes=CONTEXT,
        schema_files=[Path(__file__).with_name("schema.sql")],
        reactions=handlers.build_reactions(granting),
        resources=[registration_resources(granting), sign_in_resources(KEYS)],
        demo=load_demo,
        citizen_at_site=readmodel.citizen_at_site,
    )


service = build_service()
