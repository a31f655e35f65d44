"""registration.events.v1: citizens' registrations of interest.

What other contexts need travels in clear (birth date, sex, municipality,
priority group, conditions, preferences); names, national id and contact
details travel only inside `Sealed`.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from immunreg.contracts.common import Sealed, Sex
from immunreg.contracts.envelope import Context, Event
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


class CitizenRegistered(Event):
    citizen_id: str
    birth_date: date
    sex: Sex
    municipality_code: str
    priority_group: str
    conditions: list[str] = []
    vaccine_preferences: list[str] = []  # product codes in order; ["any"] for no preference
    preferred_municipality_code: str | None = None
    consent: Consent
    channel: str = "online"
    personal: Sealed
    language: str = DEFAULT_LANGUAGE  # one of LANGUAGES: what messages are written in


class ContactDetailsChanged(Event):
    citizen_id: str
    personal: Sealed


class PreferencesChanged(Event):
    """The new values of everything booking uses (not a delta)."""

    citizen_id: str
    vaccine_preferences: list[str]
    preferred_municipality_code: str | None
    priority_group: str
    conditions: list[str]
    language: str = DEFAULT_LANGUAGE


class RegistrationWithdrawn(Event):
    citizen_id: str
    reason: str | None = None


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
