"""The Citizen aggregate: a registration of interest in vaccination. Pure; no I/O.

Personal data and health data (declared conditions, a withdrawal's reason) reach the
domain already sealed (the edge holds the keys), so the state and the events carry
ciphertext only; of the conditions, the events publish in clear only the products they
rule out (`ruled_out_products`), all booking needs. The clear conditions a command
carries are the edge's, for deciding; they never enter an event or the state. Field validation (all
errors at once) is in `rules.py`; `decide` enforces the lifecycle:

    unregistered --Register--> active --Withdraw--> withdrawn
    active|withdrawn --Erase--> erased
    withdrawn|erased --Register--> active   (registering again; a new data key after erasure)

The citizen's data key goes to each holder that offers a key for it (`HolderKeyOffered`)
as `PersonalDataKeyGranted`, in a stream of its own per citizen (`KEY_GRANTS`), so a
grant never moves the Citizen's version (its ETag) under a client's feet. A first
registration instead carries grants to keys holders made in advance (`HolderGrant` in
`CitizenRegistered`), when the edge has such keys at hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from immunreg.contracts.common import Sealed, Sex
from immunreg.contracts.envelope import Event
from immunreg.contracts.registration import (
    CONTEXT,
    DEFAULT_LANGUAGE,
    CitizenErased,
    CitizenRegistered,
    Consent,
    ContactDetailsChanged,
    HolderGrant,
    PersonalDataKeyGranted,
    PreferencesChanged,
    RegistrationWithdrawn,
    ruled_out_products,
)
from immunreg.domain import Aggregate, Conflict, NotFound
from immunreg.reference.health import ruled_out_by
from immunreg.structs import Struct

Status = Literal["unregistered", "active", "withdrawn", "erased"]
STREAM_TYPE = "Citizen"
T = TypeVar("T")


class Preferences(Struct):
    """Everything booking uses to choose for the citizen.

    `conditions` is in clear only where the edge unsealed it (commands, rules) and, in
    the state, where an event written before health was sealed carried it in clear;
    otherwise the state's conditions are in `CitizenState.health`, sealed."""

    priority_group: str = ""
    conditions: list[str] = []
    vaccine_preferences: list[str] = []
    preferred_municipality_code: str | None = None
    language: str = DEFAULT_LANGUAGE
    ruled_out_products: list[str] = []


class CitizenState(Struct):
    """What decisions need: the lifecycle, the preferences, the newest sealed personal
    and health data."""

    status: Status = "unregistered"
    preferences: Preferences = Preferences()
    personal: Sealed | None = None
    health: Sealed | None = None


class Register(Struct):
    citizen_id: str
    birth_date: date
    sex: Sex
    municipality_code: str
    preferences: Preferences  # with the declared conditions, in clear (never published)
    consent: Consent
    channel: str
    personal: Sealed
    health: Sealed  # the declared conditions, sealed by the edge
    # The new data key wrapped to holders' pooled keys (handlers.run_registration).
    grants: list[HolderGrant] = []


class Update(Struct):
    """Change contact details (already re-sealed) and/or some preferences.

    The edge names `conditions` only when they differ from the current ones (it
    unseals those), and then gives them sealed in `health` too."""

    citizen_id: str
    personal: Sealed | None = None
    priority_group: str | UnsetType = UNSET
    conditions: list[str] | UnsetType = UNSET
    health: Sealed | None = None
    vaccine_preferences: list[str] | UnsetType = UNSET
    preferred_municipality_code: str | UnsetType | None = UNSET
    language: str | UnsetType = UNSET


class Withdraw(Struct):
    citizen_id: str
    reason: Sealed | None = None  # the reason given, sealed by the edge


class Erase(Struct):
    citizen_id: str


Command = Register | Update | Withdraw | Erase


def require_active(state: CitizenState) -> None:
    """Refuse changes to a registration that does not exist or is no longer active."""
    if state.status == "unregistered":
        raise NotFound("citizen_not_found", "no citizen is registered under this id")
    if state.status == "withdrawn":
        raise Conflict(
            "citizen_withdrawn", "the registration was withdrawn; register again to change it"
        )
    if state.status == "erased":
        raise Conflict("citizen_erased", "the citizen's personal data was erased")


def preferences_after(current: Preferences, command: Update) -> Preferences:
    """The preferences once the fields the command names are applied (the products ruled
    out follow the conditions when those are named)."""
    ruled_out = current.ruled_out_products
    if not isinstance(command.conditions, UnsetType):
        ruled_out = ruled_out_by(command.conditions)
    return Preferences(
        priority_group=_given(command.priority_group, current.priority_group),
        conditions=_given(command.conditions, current.conditions),
        vaccine_preferences=_given(command.vaccine_preferences, current.vaccine_preferences),
        preferred_municipality_code=_given(
            command.preferred_municipality_code, current.preferred_municipality_code
        ),
        language=_given(command.language, current.language),
        ruled_out_products=ruled_out,
    )


def _given(value: T | UnsetType, default: T) -> T:
    return default if isinstance(value, UnsetType) else value


def decide(state: CitizenState, command: Command) -> list[Event]:
    """The events a command produces, or a DomainError naming the rule it breaks."""
    if isinstance(command, Register):
        return _register(state, command)
    if isinstance(command, Update):
        return _update(state, command)
    if isinstance(command, Withdraw):
        return _withdraw(state, command)
    return _erase(state, command)


def _register(state: CitizenState, command: Register) -> list[Event]:
    if state.status == "active":
        raise Conflict("already_registered", "this national id is already registered")
    prefs = command.preferences
    return [
        CitizenRegistered(
            citizen_id=command.citizen_id,
            birth_date=command.birth_date,
            sex=command.sex,
            municipality_code=command.municipality_code,
            priority_group=prefs.priority_group,
            vaccine_preferences=prefs.vaccine_preferences,
            preferred_municipality_code=prefs.preferred_municipality_code,
            consent=command.consent,
            channel=command.channel,
            personal=command.personal,
            language=prefs.language,
            ruled_out_products=ruled_out_by(prefs.conditions),
            health=command.health,
            grants=command.grants,
        )
    ]


def _update(state: CitizenState, command: Update) -> list[Event]:
    require_active(state)
    events: list[Event] = []
    if command.personal is not None:
        events.append(
            ContactDetailsChanged(citizen_id=command.citizen_id, personal=command.personal)
        )
    after = preferences_after(state.preferences, command)
    if after != state.preferences or command.health is not None:
        events.append(
            PreferencesChanged(
                citizen_id=command.citizen_id,
                vaccine_preferences=after.vaccine_preferences,
                preferred_municipality_code=after.preferred_municipality_code,
                priority_group=after.priority_group,
                language=after.language,
                ruled_out_products=after.ruled_out_products,
                # Not a delta: the newest sealed conditions go with every change.
                health=command.health or state.health,
            )
        )
    return events


def _withdraw(state: CitizenState, command: Withdraw) -> list[Event]:
    if state.status == "withdrawn":
        return []  # withdrawing twice changes nothing
    require_active(state)
    return [RegistrationWithdrawn(citizen_id=command.citizen_id, health=command.reason)]


def _erase(state: CitizenState, command: Erase) -> list[Event]:
    if state.status == "unregistered":
        raise NotFound("citizen_not_found", "no citizen is registered under this id")
    if state.status == "erased":
        return []  # erasing twice changes nothing
    events: list[Event] = []
    if state.status == "active":
        # Consumers that only follow withdrawals stop scheduling too. No reason: the
        # erasure that follows says why.
        events.append(RegistrationWithdrawn(citizen_id=command.citizen_id))
    events.append(CitizenErased(citizen_id=command.citizen_id))
    return events


def _preferences_of(event: CitizenRegistered | PreferencesChanged) -> Preferences:
    return Preferences(
        priority_group=event.priority_group,
        conditions=event.conditions,
        vaccine_preferences=event.vaccine_preferences,
        preferred_municipality_code=event.preferred_municipality_code,
        language=event.language,
        ruled_out_products=ruled_out_products(event),
    )


def evolve(state: CitizenState, event: Event) -> CitizenState:
    """The state after an event (events are facts: never refused)."""
    if isinstance(event, CitizenRegistered):
        return CitizenState(
            status="active",
            preferences=_preferences_of(event),
            personal=event.personal,
            health=event.health,
        )
    if isinstance(event, ContactDetailsChanged):
        return msgspec.structs.replace(state, personal=event.personal)
    if isinstance(event, PreferencesChanged):
        return msgspec.structs.replace(
            state, preferences=_preferences_of(event), health=event.health
        )
    if isinstance(event, RegistrationWithdrawn):
        return msgspec.structs.replace(state, status="withdrawn")
    if isinstance(event, CitizenErased):
        return CitizenState(status="erased")
    return state


def evolve_all(state: CitizenState, events: Sequence[Event]) -> CitizenState:
    """The state after several events, in order."""
    for event in events:
        state = evolve(state, event)
    return state


CITIZEN: Aggregate[CitizenState, Command] = Aggregate(
    stream_type=STREAM_TYPE,
    context=CONTEXT,
    initial=CitizenState,
    evolve=evolve,
    decide=decide,
)


# --- grants of the data key to holders --------------------------------------------------

GRANTS_STREAM_TYPE = "CitizenKeyGrants"


def grants_stream_id(citizen_id: str) -> str:
    """The stream of one citizen's key grants."""
    return f"key-grants-{citizen_id}"


class GrantsState(Struct):
    """The holder keys the citizen's data key was granted to (public keys, base64)."""

    granted: frozenset[str] = frozenset()


class Grant(Struct):
    """Grant the data key `data_key_id`, already wrapped to `holder_key`, to `recipient`."""

    citizen_id: str
    recipient: str
    holder_key: str
    data_key_id: str
    wrapped_key: str
    wrap_alg: str


def decide_grant(state: GrantsState, command: Grant) -> list[Event]:
    """One grant per offered key: an offer delivered twice is granted once."""
    if command.holder_key in state.granted:
        return []
    return [
        PersonalDataKeyGranted(
            citizen_id=command.citizen_id,
            recipient=command.recipient,
            wrapped_key=command.wrapped_key,
            wrap_alg=command.wrap_alg,
            holder_key=command.holder_key,
            data_key_id=command.data_key_id,
        )
    ]


def evolve_grant(state: GrantsState, event: Event) -> GrantsState:
    """The keys granted to, after an event."""
    if isinstance(event, PersonalDataKeyGranted) and event.holder_key is not None:
        return GrantsState(granted=state.granted | {event.holder_key})
    return state


KEY_GRANTS: Aggregate[GrantsState, Grant] = Aggregate(
    stream_type=GRANTS_STREAM_TYPE,
    context=CONTEXT,
    initial=GrantsState,
    evolve=evolve_grant,
    decide=decide_grant,
)
