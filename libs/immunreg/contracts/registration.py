"""registration.events.v1: citizens' registrations of interest.

What other contexts need travels in clear (birth date, sex, municipality,
priority group, preferences, and the products declared conditions rule out); names,
national id and contact details travel only inside `personal`, and health data (the
declared conditions, a withdrawal's reason) only inside `health`: both `Sealed` with
the citizen's data key, so erasing the key leaves neither readable anywhere.

Events written before health was sealed carry `conditions` (and a withdrawal's
`reason`) in clear; they still decode, and a consumer derives what it needs from them
(`immunreg.reference.health.ruled_out_by`). New events leave both empty.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from immunreg.contracts.common import Sealed, Sex
from immunreg.contracts.envelope import Context, Event
from immunreg.reference.health import ruled_out_by
from immunreg.structs import Struct

# The languages messages to citizens are written in: Serbian in Latin and in Cyrillic
# script, and English.
Language = Literal["sr-Latn", "sr-Cyrl", "en"]
LANGUAGES: tuple[Language, ...] = ("sr-Latn", "sr-Cyrl", "en")
DEFAULT_LANGUAGE: Language = "sr-Latn"


class Consent(Struct):
    """What the citizen agreed to."""

    data_processing: bool
    reminders: bool = False
    research: bool = False


class PersonalData(Struct):
    """What `Sealed` holds in registration events, as JSON, once unsealed.

    Sealed with the citizen's data key and the citizen id as associated data;
    a recipient of `PersonalDataKeyGranted` unseals it with
    `immunreg.sealing.unseal(key, sealed, citizen_id.encode())`.
    """

    national_id: str
    given_name: str
    family_name: str
    phone: str | None = None  # E.164, e.g. +381641234567
    email: str | None = None


class HealthData(Struct):
    """What `health` holds in registration events, as JSON, once unsealed.

    Sealed with the citizen's data key (the one that seals `personal`) and
    `health_context(citizen_id)` as associated data, so it opens with
    `immunreg.sealing.unseal(key, sealed, health_context(citizen_id))` and never in
    place of `personal`.
    """

    conditions: list[str] = []  # condition codes (immunreg.reference.health)
    withdrawal_reason: str | None = None  # free text the citizen gave on withdrawing


def health_context(citizen_id: str) -> bytes:
    """The associated data `health` is sealed under: this citizen's health data only."""
    return f"immunreg.registration.health|{citizen_id}".encode()


class HolderGrant(Struct):
    """The citizen's data key wrapped to a key a holder made in advance
    (`HolderKeysPooled`: `holder_key` is its public half) with
    `immunreg.sealing.wrap_key(public, key, grant_context(citizen_id, recipient))`,
    carried in `CitizenRegistered`: the holder binds that key to the citizen and keeps
    this grant (`immunreg.holderkeys.offer`) as it keeps a
    `PersonalDataKeyGranted`, and deletes it on `CitizenErased` the same way."""

    recipient: str
    holder_key: str  # the pooled public key (base64) it is wrapped to
    wrapped_key: str
    wrap_alg: str


class CitizenRegistered(Event):
    citizen_id: str
    birth_date: date
    sex: Sex
    municipality_code: str
    priority_group: str
    conditions: list[str] = []  # in clear only in events written before `health`
    vaccine_preferences: list[str] = []  # product codes in order; ["any"] for no preference
    preferred_municipality_code: str | None = None
    consent: Consent
    channel: str = "online"
    personal: Sealed
    language: str = DEFAULT_LANGUAGE  # one of LANGUAGES: what messages are written in
    # Product codes the declared conditions rule out (sorted): all booking needs of them.
    ruled_out_products: list[str] = []
    health: Sealed | None = None  # HealthData: the declared conditions
    # The data key wrapped to holders' pooled keys (first registrations only; a holder
    # with no grant here offers a key of its own, as for events written before grants).
    grants: list[HolderGrant] = []


class ContactDetailsChanged(Event):
    citizen_id: str
    personal: Sealed


class PreferencesChanged(Event):
    """The new values of everything booking uses (not a delta)."""

    citizen_id: str
    vaccine_preferences: list[str]
    preferred_municipality_code: str | None
    priority_group: str
    conditions: list[str] = []  # in clear only in events written before `health`
    language: str = DEFAULT_LANGUAGE
    ruled_out_products: list[str] = []
    health: Sealed | None = None  # HealthData: the declared conditions, after the change


def ruled_out_products(event: CitizenRegistered | PreferencesChanged) -> list[str]:
    """The products the citizen's conditions rule out, as of the event: published, or (an
    event written before health was sealed) derived from the conditions it carries."""
    if not event.conditions:
        return event.ruled_out_products
    return sorted({*event.ruled_out_products, *ruled_out_by(event.conditions)})


class RegistrationWithdrawn(Event):
    citizen_id: str
    reason: str | None = None  # in clear only in events written before `health`
    health: Sealed | None = None  # HealthData: the reason given, when one was


class CitizenErased(Event):
    """The citizen's key is destroyed: drop any personal data you hold."""

    citizen_id: str


class PersonalDataKeyGranted(Event):
    """The citizen's data key, wrapped to the key a holder offered for this citizen
    (`HolderKeyOffered`: `holder_key` is its public half) with
    `immunreg.sealing.wrap_key(public, key, grant_context(citizen_id, recipient))`.
    The holder deletes the private half on CitizenErased, and with it every way to
    open this grant. Grants made before holder keys (`wrap_alg` "RSA-OAEP-256",
    no `holder_key`) are ignored."""

    citizen_id: str
    recipient: str
    wrapped_key: str
    wrap_alg: str = "RSA-OAEP-256"
    holder_key: str | None = None  # the offered public key (base64) it is wrapped to
    data_key_id: str | None = None  # the `key_id` in the Sealed values it opens


def grant_context(citizen_id: str, holder: str) -> bytes:
    """The associated data a grant is wrapped under: it opens for this citizen and
    this holder only."""
    return f"immunreg.registration.grant|{citizen_id}|{holder}".encode()


CONTEXT = Context(
    "registration",
    [
        CitizenRegistered,
        ContactDetailsChanged,
        PreferencesChanged,
        RegistrationWithdrawn,
        CitizenErased,
        PersonalDataKeyGranted,
    ],
)
