"""What the registration API accepts and answers (the OpenAPI document is built from these)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from immunreg.contracts.common import Sex
from immunreg.contracts.registration import DEFAULT_LANGUAGE, Consent, Language
from immunreg.structs import Struct

Status = Literal["active", "withdrawn", "erased"]


class RegisterCitizen(Struct, forbid_unknown_fields=True):
    """A registration of interest in vaccination."""

    national_id: str  # JMBG, 13 digits
    given_name: str
    family_name: str
    birth_date: date
    sex: Sex
    municipality_code: str  # of residence (2022 census codes)
    phone: str | None = None  # E.164 (+381...), or a Serbian number starting with 0
    email: str | None = None
    priority_group: str = "general"
    conditions: list[str] = []
    # product codes in order of preference, or ["any"]
    vaccine_preferences: list[str] = msgspec.field(default_factory=lambda: ["any"])
    preferred_municipality_code: str | None = None
    consent: Consent
    language: Language = DEFAULT_LANGUAGE  # what messages to the citizen are written in


class Registered(msgspec.Struct, frozen=True):
    """The id of the new registration."""

    citizen_id: str


class UpdateCitizen(Struct, forbid_unknown_fields=True):
    """New contact details and/or preferences; a field left out keeps its value.

    `null` removes a phone, an e-mail or the preferred municipality (one of
    phone and e-mail must remain).
    """

    phone: str | UnsetType | None = UNSET
    email: str | UnsetType | None = UNSET
    priority_group: str | UnsetType = UNSET
    conditions: list[str] | UnsetType = UNSET
    vaccine_preferences: list[str] | UnsetType = UNSET
    preferred_municipality_code: str | UnsetType | None = UNSET
    language: Language | UnsetType = UNSET


class WithdrawQuery(Struct):
    """Why the citizen withdraws (optional, free text)."""

    reason: str | None = None


class CitizenRecord(Struct, tag_field="view", tag="full"):
    """The whole registration: for the citizen themself and for admins."""

    citizen_id: str
    status: Status
    version: int
    national_id: str
    given_name: str
    family_name: str
    birth_date: date
    sex: Sex
    municipality_code: str
    phone: str | None
    email: str | None
    priority_group: str
    conditions: list[str]
    vaccine_preferences: list[str]
    preferred_municipality_code: str | None
    consent: Consent
    channel: str
    registered_at: datetime
    updated_at: datetime
    # What messages are written in; null for a registration older than this field
    # until the read model is rebuilt or the citizen changes a preference.
    language: Language | None = None


class VaccinationView(Struct, tag_field="view", tag="vaccination"):
    """What site staff need to vaccinate someone: no national id, contacts or preferences."""

    citizen_id: str
    status: Status
    given_name: str
    family_name: str
    birth_date: date
    conditions: list[str]


CitizenView = CitizenRecord | VaccinationView


class SignInCodeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Ask for a one-time code at the phone number or e-mail given at registration."""

    contact: str


class SignInCodeAccepted(msgspec.Struct, frozen=True):
    """The same answer whether or not the contact is registered."""

    detail: str = "if this contact belongs to an active registration, a code is on its way"


class SignInTokenRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The contact a code was sent to, and the code."""

    contact: str
    code: str


class SignInToken(msgspec.Struct, frozen=True, kw_only=True):
    """A bearer token for the citizen's own record only."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int  # seconds
    citizen_id: str
