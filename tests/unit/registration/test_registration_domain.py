"""decide/evolve of the Citizen aggregate: a table of lifecycle cases, no I/O."""

from __future__ import annotations

from datetime import date

import pytest

from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Event
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    Consent,
    ContactDetailsChanged,
    PersonalDataKeyGranted,
    PreferencesChanged,
    RegistrationWithdrawn,
)
from immunreg.domain import Conflict, DomainError, NotFound
from services.registration.domain import (
    ERASURE_REASON,
    CitizenState,
    Command,
    Erase,
    Grant,
    GrantsState,
    Preferences,
    Register,
    Update,
    Withdraw,
    decide,
    decide_grant,
    evolve_all,
    evolve_grant,
)

CID = "c-aaaaaaaaaaaaaaaaaaaa"
SEALED = Sealed(key_id="k1", nonce="bm9uY2U=", ciphertext="Y2lwaGVy")
RESEALED = Sealed(key_id="k1", nonce="b3RoZXI=", ciphertext="bmV3")
PREFS = Preferences(
    priority_group="general",
    conditions=["diabetes"],
    vaccine_preferences=["EU/1/20/1528"],
    preferred_municipality_code="70092",
)


def register() -> Register:
    return Register(
        citizen_id=CID,
        birth_date=date(1960, 3, 4),
        sex="female",
        municipality_code="70092",
        preferences=PREFS,
        consent=Consent(data_processing=True),
        channel="online",
        personal=SEALED,
    )


def state_after(*commands: Command) -> CitizenState:
    state = CitizenState()
    for command in commands:
        state = evolve_all(state, decide(state, command))
    return state


UNREGISTERED = CitizenState()
ACTIVE = state_after(register())
WITHDRAWN = state_after(register(), Withdraw(citizen_id=CID))
ERASED = state_after(register(), Erase(citizen_id=CID))


def types(events: list[Event]) -> list[str]:
    return [e.type_name() for e in events]


CASES: list[tuple[str, CitizenState, Command, list[str]]] = [
    ("register new", UNREGISTERED, register(), ["CitizenRegistered"]),
    ("register again after withdrawal", WITHDRAWN, register(), ["CitizenRegistered"]),
    ("register again after erasure", ERASED, register(), ["CitizenRegistered"]),
    (
        "change contact",
        ACTIVE,
        Update(citizen_id=CID, personal=RESEALED),
        ["ContactDetailsChanged"],
    ),
    (
        "change a preference",
        ACTIVE,
        Update(citizen_id=CID, priority_group="chronic_patient"),
        ["PreferencesChanged"],
    ),
    (
        "change both",
        ACTIVE,
        Update(citizen_id=CID, personal=RESEALED, vaccine_preferences=["any"]),
        ["ContactDetailsChanged", "PreferencesChanged"],
    ),
    (
        "same values change nothing",
        ACTIVE,
        Update(citizen_id=CID, priority_group="general", conditions=["diabetes"]),
        [],
    ),
    ("empty update changes nothing", ACTIVE, Update(citizen_id=CID), []),
    ("withdraw", ACTIVE, Withdraw(citizen_id=CID, reason="moved"), ["RegistrationWithdrawn"]),
    ("withdraw twice", WITHDRAWN, Withdraw(citizen_id=CID), []),
    (
        "erase an active citizen withdraws first",
        ACTIVE,
        Erase(citizen_id=CID),
        ["RegistrationWithdrawn", "CitizenErased"],
    ),
    ("erase a withdrawn citizen", WITHDRAWN, Erase(citizen_id=CID), ["CitizenErased"]),
    ("erase twice", ERASED, Erase(citizen_id=CID), []),
]


@pytest.mark.parametrize(
    ("state", "command", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(state: CitizenState, command: Command, expected: list[str]) -> None:
    assert types(decide(state, command)) == expected


REFUSALS: list[tuple[str, CitizenState, Command, type[DomainError], str]] = [
    ("register twice", ACTIVE, register(), Conflict, "already_registered"),
    ("update unknown", UNREGISTERED, Update(citizen_id=CID), NotFound, "citizen_not_found"),
    ("update withdrawn", WITHDRAWN, Update(citizen_id=CID), Conflict, "citizen_withdrawn"),
    ("update erased", ERASED, Update(citizen_id=CID), Conflict, "citizen_erased"),
    ("withdraw unknown", UNREGISTERED, Withdraw(citizen_id=CID), NotFound, "citizen_not_found"),
    ("withdraw erased", ERASED, Withdraw(citizen_id=CID), Conflict, "citizen_erased"),
    ("erase unknown", UNREGISTERED, Erase(citizen_id=CID), NotFound, "citizen_not_found"),
]


@pytest.mark.parametrize(
    ("state", "command", "error", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals(
    state: CitizenState, command: Command, error: type[DomainError], code: str
) -> None:
    with pytest.raises(error) as raised:
        decide(state, command)
    assert raised.value.code == code


def test_registration_carries_what_other_services_need_and_grants_no_key() -> None:
    (registered,) = decide(UNREGISTERED, register())
    assert isinstance(registered, CitizenRegistered)
    assert registered.citizen_id == CID
    assert registered.birth_date == date(1960, 3, 4)
    assert registered.conditions == ["diabetes"]
    assert registered.vaccine_preferences == ["EU/1/20/1528"]
    assert registered.personal == SEALED


def grant(holder_key: str) -> Grant:
    return Grant(
        citizen_id=CID,
        recipient="certificates",
        holder_key=holder_key,
        data_key_id="k1",
        wrapped_key="d3JhcHBlZA==",
        wrap_alg="X25519-HKDF-SHA256-A256GCM",
    )


def test_each_offered_key_is_granted_once() -> None:
    (granted,) = decide_grant(GrantsState(), grant("cHVibGljLTE="))
    assert granted == PersonalDataKeyGranted(
        citizen_id=CID,
        recipient="certificates",
        wrapped_key="d3JhcHBlZA==",
        wrap_alg="X25519-HKDF-SHA256-A256GCM",
        holder_key="cHVibGljLTE=",
        data_key_id="k1",
    )
    after = evolve_grant(GrantsState(), granted)
    assert decide_grant(after, grant("cHVibGljLTE=")) == [], "an offer delivered twice"
    assert len(decide_grant(after, grant("cHVibGljLTI="))) == 1, "a new key (a new registration)"


def test_preferences_changed_carries_every_value_not_a_delta() -> None:
    (event,) = decide(ACTIVE, Update(citizen_id=CID, preferred_municipality_code=None))
    assert event == PreferencesChanged(
        citizen_id=CID,
        vaccine_preferences=["EU/1/20/1528"],
        preferred_municipality_code=None,
        priority_group="general",
        conditions=["diabetes"],
    )


def test_contact_change_carries_the_new_sealed_data() -> None:
    (event,) = decide(ACTIVE, Update(citizen_id=CID, personal=RESEALED))
    assert event == ContactDetailsChanged(citizen_id=CID, personal=RESEALED)
    assert evolve_all(ACTIVE, [event]).personal == RESEALED


def test_withdrawal_reason_and_erasure_reason() -> None:
    (withdrawn,) = decide(ACTIVE, Withdraw(citizen_id=CID, reason="moved abroad"))
    assert withdrawn == RegistrationWithdrawn(citizen_id=CID, reason="moved abroad")
    withdrawn, erased = decide(ACTIVE, Erase(citizen_id=CID))
    assert withdrawn == RegistrationWithdrawn(citizen_id=CID, reason=ERASURE_REASON)
    assert erased == CitizenErased(citizen_id=CID)


def test_evolve() -> None:
    assert ACTIVE.status == "active" and ACTIVE.preferences == PREFS
    assert ACTIVE.personal == SEALED
    assert WITHDRAWN.status == "withdrawn" and WITHDRAWN.personal == SEALED
    assert CitizenState(status="erased") == ERASED, "erasure forgets preferences and ciphertext"
    changed = state_after(register(), Update(citizen_id=CID, conditions=[]))
    assert changed.preferences.conditions == []
    assert changed.preferences.priority_group == "general"
    again = state_after(register(), Erase(citizen_id=CID), register())
    assert again.status == "active" and again.personal == SEALED
