"""decide/evolve of the Citizen aggregate: a table of lifecycle cases, no I/O."""

from __future__ import annotations

from datetime import date

import msgspec
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
HEALTH = Sealed(key_id="k1", nonce="aGVhbHRo", ciphertext="Y29uZGl0aW9ucw==")
REHEALTH = Sealed(key_id="k1", nonce="aGVhbHRoMg==", ciphertext="bmV3Y29uZGl0aW9ucw==")
REASON = Sealed(key_id="k1", nonce="cmVhc29u", ciphertext="bW92ZWQ=")
PREFS = Preferences(
    priority_group="general",
    conditions=["pregnancy", "diabetes"],
    vaccine_preferences=["EU/1/20/1528"],
    preferred_municipality_code="70092",
)
RULED_OUT = ["BBIBP-CorV", "Sputnik-V"]  # what pregnancy rules out (reference data)


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
        health=HEALTH,
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
        Update(citizen_id=CID, priority_group="general"),
        [],
    ),
    (
        "new conditions, sealed by the edge",
        ACTIVE,
        Update(citizen_id=CID, conditions=["diabetes"], health=REHEALTH),
        ["PreferencesChanged"],
    ),
    (
        "conditions that rule out the same products still change the sealed ones",
        ACTIVE,
        Update(citizen_id=CID, conditions=["pregnancy"], health=REHEALTH),
        ["PreferencesChanged"],
    ),
    ("empty update changes nothing", ACTIVE, Update(citizen_id=CID), []),
    ("withdraw", ACTIVE, Withdraw(citizen_id=CID, reason=REASON), ["RegistrationWithdrawn"]),
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
    assert registered.conditions == [], "conditions never travel in clear"
    assert registered.health == HEALTH
    assert registered.ruled_out_products == RULED_OUT, "what booking needs of them"
    assert registered.vaccine_preferences == ["EU/1/20/1528"]
    assert registered.personal == SEALED


@pytest.mark.parametrize(("state", "command"), [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_no_event_carries_conditions_or_a_withdrawal_reason_in_clear(
    state: CitizenState, command: Command
) -> None:
    for event in decide(state, command):
        assert getattr(event, "conditions", []) == [], event
        assert getattr(event, "reason", None) is None, event


def test_the_state_keeps_conditions_sealed_only() -> None:
    assert ACTIVE.preferences.conditions == [] and ACTIVE.health == HEALTH
    assert ACTIVE.preferences.ruled_out_products == RULED_OUT
    changed = state_after(register(), Update(citizen_id=CID, conditions=[], health=REHEALTH))
    assert changed.health == REHEALTH and changed.preferences.ruled_out_products == []


LEGACY = CitizenRegistered(
    citizen_id=CID,
    birth_date=date(1960, 3, 4),
    sex="female",
    municipality_code="70092",
    priority_group="general",
    conditions=["pregnancy"],
    consent=Consent(data_processing=True),
    personal=SEALED,
)


def test_an_event_from_before_sealing_decodes_and_its_conditions_rule_products_out() -> None:
    old = msgspec.json.encode(LEGACY)
    assert b"ruled_out_products" in old  # written by today's struct: strip the new fields
    as_written_then = msgspec.json.decode(old)
    for field in ("ruled_out_products", "health"):
        del as_written_then[field]
    decoded = msgspec.json.decode(msgspec.json.encode(as_written_then), type=CitizenRegistered)
    assert decoded.health is None and decoded.conditions == ["pregnancy"]
    state = evolve_all(CitizenState(), [decoded])
    assert state.preferences.ruled_out_products == ["BBIBP-CorV", "Sputnik-V"]


def test_a_preference_change_after_an_old_event_seals_its_conditions() -> None:
    legacy = evolve_all(CitizenState(), [LEGACY])
    # The edge names the clear conditions the old event carried, and seals them.
    (event,) = decide(
        legacy,
        Update(
            citizen_id=CID, vaccine_preferences=["any"], conditions=["pregnancy"], health=HEALTH
        ),
    )
    assert isinstance(event, PreferencesChanged)
    assert (event.conditions, event.health) == ([], HEALTH)
    assert event.ruled_out_products == ["BBIBP-CorV", "Sputnik-V"]
    after = evolve_all(legacy, [event])
    assert after.preferences.conditions == [] and after.health == HEALTH


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
        ruled_out_products=RULED_OUT,
        health=HEALTH,
    )


def test_contact_change_carries_the_new_sealed_data() -> None:
    (event,) = decide(ACTIVE, Update(citizen_id=CID, personal=RESEALED))
    assert event == ContactDetailsChanged(citizen_id=CID, personal=RESEALED)
    assert evolve_all(ACTIVE, [event]).personal == RESEALED


def test_withdrawal_reason_is_sealed_and_erasure_gives_none() -> None:
    (withdrawn,) = decide(ACTIVE, Withdraw(citizen_id=CID, reason=REASON))
    assert withdrawn == RegistrationWithdrawn(citizen_id=CID, health=REASON)
    withdrawn, erased = decide(ACTIVE, Erase(citizen_id=CID))
    assert withdrawn == RegistrationWithdrawn(citizen_id=CID)
    assert erased == CitizenErased(citizen_id=CID)


def test_evolve() -> None:
    assert ACTIVE.status == "active"
    assert ACTIVE.preferences == msgspec.structs.replace(
        PREFS, conditions=[], ruled_out_products=RULED_OUT
    )
    assert ACTIVE.personal == SEALED
    assert WITHDRAWN.status == "withdrawn" and WITHDRAWN.personal == SEALED
    assert CitizenState(status="erased") == ERASED, "erasure forgets preferences and ciphertext"
    changed = state_after(register(), Update(citizen_id=CID, conditions=[], health=REHEALTH))
    assert changed.preferences.conditions == []
    assert changed.preferences.priority_group == "general"
    again = state_after(register(), Erase(citizen_id=CID), register())
    assert again.status == "active" and again.personal == SEALED
