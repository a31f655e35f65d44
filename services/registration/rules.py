"""Field rules for registrations and updates: every bad field at once, pure.

Each check returns `Violation`s (one per bad field, reasons joined) instead of
raising, so the client hears about every problem in one 422. The reference
lists (municipalities, priority groups, conditions, products) come in a
`Rules` value: configurable, and replaceable in tests.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache

import msgspec

from immunreg.reference.calendar import age_on
from immunreg.reference.geography import municipalities
from immunreg.reference.health import conditions, priority_groups
from immunreg.reference.vaccines import vaccine_catalog

from . import jmbg
from .domain import CitizenState, Preferences, Update, preferences_after
from .schemas import RegisterCitizen, UpdateCitizen

ANY_VACCINE = "any"
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
MAX_AGE = 130
MAX_NAME_LENGTH = 100
MAX_EMAIL_LENGTH = 254
MAX_LIST_LENGTH = 20
SERBIA_CALLING_CODE = "381"

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_PHONE_SEPARATORS = re.compile(r"[\s\-()./]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


@dataclass(frozen=True)
class Rules:
    """The configurable code lists a registration is checked against."""

    municipalities: frozenset[str]
    priority_groups: frozenset[str]
    contraindications: Mapping[str, frozenset[str]]  # condition code -> product codes
    products: frozenset[str]

    @property
    def conditions(self) -> frozenset[str]:
        """Every declarable condition code."""
        return frozenset(self.contraindications)


@cache
def reference_rules() -> Rules:
    """The rules from `immunreg.reference` (the shipped configuration)."""
    return Rules(
        municipalities=frozenset(municipalities()),
        priority_groups=frozenset(priority_groups()),
        contraindications={c.code: frozenset(c.contraindicates) for c in conditions().values()},
        products=frozenset(vaccine_catalog().codes()),
    )


class Violation(msgspec.Struct, frozen=True):
    """One bad field (a path in the request body, e.g. `consent.data_processing`) and why."""

    field: str
    reason: str


class Contact(msgspec.Struct, frozen=True):
    """A citizen's phone (E.164) and e-mail, either may be missing."""

    phone: str | None
    email: str | None


def normalize_phone(raw: str) -> str | None:
    """E.164 (`+381641234567`) from common spellings; None if it is not a phone number.

    Spaces, dashes, dots, slashes and brackets are dropped; `00` becomes `+`;
    a single leading `0` is a Serbian national number (`064...` -> `+38164...`).
    """
    digits = _PHONE_SEPARATORS.sub("", raw)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    elif digits.startswith("0"):
        digits = "+" + SERBIA_CALLING_CODE + digits[1:]
    return digits if _E164.fullmatch(digits) else None


def normalize_email(raw: str) -> str | None:
    """The address with its domain in lower case; None if it is not an address."""
    value = raw.strip()
    if len(value) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(value):
        return None
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalize_name(raw: str) -> str:
    """The name with surrounding and repeated whitespace removed (NFC)."""
    return " ".join(unicodedata.normalize("NFC", raw).split())


def check_registration(body: RegisterCitizen, today: date, rules: Rules) -> list[Violation]:
    """Every field of a registration that breaks a rule (empty: it may be registered)."""
    found: list[Violation] = []

    def bad(field: str, reasons: list[str]) -> None:
        if reasons:
            found.append(Violation(field, "; ".join(reasons)))

    parsed: jmbg.Jmbg | None = None
    try:
        parsed = jmbg.parse(body.national_id.strip())
    except jmbg.InvalidJmbg as e:
        bad("national_id", [str(e)])
    if parsed is not None and parsed.birth_date != body.birth_date:
        bad(
            "national_id",
            [f"it encodes the birth date {parsed.birth_date}, not {body.birth_date}"],
        )
    bad("given_name", _name_reasons(body.given_name))
    bad("family_name", _name_reasons(body.family_name))
    bad("birth_date", _birth_date_reasons(body.birth_date, today))
    if parsed is not None and body.sex not in ("other", parsed.sex):
        bad("sex", [f"the national id is that of a {parsed.sex} person"])
    bad("municipality_code", _municipality_reasons(body.municipality_code, rules))
    if body.preferred_municipality_code is not None:
        bad(
            "preferred_municipality_code",
            _municipality_reasons(body.preferred_municipality_code, rules),
        )
    found += _contact_violations(body.phone, body.email, body.phone, body.email)
    prefs = Preferences(
        priority_group=body.priority_group,
        conditions=body.conditions,
        vaccine_preferences=body.vaccine_preferences,
        preferred_municipality_code=body.preferred_municipality_code,
    )
    found += _preference_violations(prefs, rules, fields=None)
    if not body.consent.data_processing:
        bad("consent.data_processing", ["consent to processing your data is needed to register"])
    return found


def check_update(
    body: UpdateCitizen, state: CitizenState, contact: Contact | None, rules: Rules
) -> list[Violation]:
    """Every field of an update that breaks a rule, judged on the values after it.

    `contact` is the current contact (unsealed by the caller) when the body
    changes phone or e-mail; None otherwise.
    """
    found: list[Violation] = []
    if contact is not None:
        phone = contact.phone if isinstance(body.phone, msgspec.UnsetType) else body.phone
        email = contact.email if isinstance(body.email, msgspec.UnsetType) else body.email
        given_phone = None if isinstance(body.phone, msgspec.UnsetType) else body.phone
        given_email = None if isinstance(body.email, msgspec.UnsetType) else body.email
        found += _contact_violations(phone, email, given_phone, given_email)
    after = preferences_after(state.preferences, _as_update(body))
    named = preferences_named(body) - {"language"}
    found += _preference_violations(after, rules, fields=named)
    if "preferred_municipality_code" in named and after.preferred_municipality_code is not None:
        reasons = _municipality_reasons(after.preferred_municipality_code, rules)
        if reasons:
            found.append(Violation("preferred_municipality_code", "; ".join(reasons)))
    return found


def contact_after(body: UpdateCitizen, contact: Contact) -> Contact:
    """The (normalized) contact once the update is applied; call after `check_update`."""
    phone = contact.phone if isinstance(body.phone, msgspec.UnsetType) else body.phone
    email = contact.email if isinstance(body.email, msgspec.UnsetType) else body.email
    return Contact(
        phone=normalize_phone(phone) if phone is not None else None,
        email=normalize_email(email) if email is not None else None,
    )


def changes_contact(body: UpdateCitizen) -> bool:
    """Whether the update names a phone or an e-mail."""
    return not (
        isinstance(body.phone, msgspec.UnsetType) and isinstance(body.email, msgspec.UnsetType)
    )


def preferences_named(body: UpdateCitizen) -> set[str]:
    """The preference fields the update names."""
    fields = (
        "priority_group",
        "conditions",
        "vaccine_preferences",
        "preferred_municipality_code",
        "language",
    )
    return {f for f in fields if not isinstance(getattr(body, f), msgspec.UnsetType)}


def _as_update(body: UpdateCitizen) -> Update:
    return Update(
        citizen_id="",
        priority_group=body.priority_group,
        conditions=body.conditions,
        vaccine_preferences=body.vaccine_preferences,
        preferred_municipality_code=body.preferred_municipality_code,
        language=body.language,
    )


def _name_reasons(name: str) -> list[str]:
    clean = normalize_name(name)
    if not clean:
        return ["must not be empty"]
    reasons = []
    if len(clean) > MAX_NAME_LENGTH:
        reasons.append(f"must be at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c)[0] in "CN" for c in clean):
        reasons.append("must not contain digits or control characters")
    return reasons


def _birth_date_reasons(born: date, today: date) -> list[str]:
    if born > today:
        return ["is in the future"]
    if born < EARLIEST_BIRTH_DATE:
        return [f"must not be before {EARLIEST_BIRTH_DATE}"]
    if age_on(born, today) > MAX_AGE:
        return [f"means an age over {MAX_AGE}"]
    return []


def _municipality_reasons(code: str, rules: Rules) -> list[str]:
    return [] if code in rules.municipalities else [f"unknown municipality code {code!r}"]


def _contact_violations(
    phone: str | None, email: str | None, given_phone: str | None, given_email: str | None
) -> list[Violation]:
    found = []
    if given_phone is not None and normalize_phone(given_phone) is None:
        found.append(
            Violation("phone", "not a phone number (use +381..., or a Serbian number from 0)")
        )
    if given_email is not None and normalize_email(given_email) is None:
        found.append(Violation("email", "not an e-mail address"))
    if phone is None and email is None:
        found.append(Violation("phone", "give a phone number or an e-mail address (or both)"))
    return found


def _preference_violations(
    prefs: Preferences, rules: Rules, fields: set[str] | None
) -> list[Violation]:
    """Rule breaches in the preferences; with `fields`, only fields named in an update,
    plus vaccine preferences when a named change makes them contraindicated."""
    found: list[Violation] = []

    def report(field: str, reasons: list[str]) -> None:
        if reasons and (fields is None or field in fields or field == "vaccine_preferences"):
            found.append(Violation(field, "; ".join(reasons)))

    if prefs.priority_group not in rules.priority_groups:
        known = ", ".join(sorted(rules.priority_groups))
        report("priority_group", [f"unknown priority group {prefs.priority_group!r} ({known})"])
    report("conditions", _code_list_reasons(prefs.conditions, rules.conditions, "condition"))
    vaccine_reasons: list[str] = []
    if fields is None or "vaccine_preferences" in fields:
        vaccine_reasons = _vaccine_reasons(prefs.vaccine_preferences, rules)
    if not vaccine_reasons:
        vaccine_reasons = _contraindication_reasons(prefs, rules)
    report("vaccine_preferences", vaccine_reasons)
    return found


def _code_list_reasons(codes: list[str], known: frozenset[str], what: str) -> list[str]:
    reasons = []
    if len(codes) > MAX_LIST_LENGTH:
        reasons.append(f"at most {MAX_LIST_LENGTH} codes")
    unknown = [c for c in codes if c not in known]
    if unknown:
        reasons.append(f"unknown {what} code(s): {', '.join(unknown)}")
    repeated = sorted({c for c in codes if codes.count(c) > 1})
    if repeated:
        reasons.append(f"listed more than once: {', '.join(repeated)}")
    return reasons


def _vaccine_reasons(codes: list[str], rules: Rules) -> list[str]:
    if not codes:
        return [f'name at least one product, or "{ANY_VACCINE}"']
    if ANY_VACCINE in codes:
        return [] if codes == [ANY_VACCINE] else [f'"{ANY_VACCINE}" must stand alone']
    return _code_list_reasons(codes, rules.products, "product")


def _contraindication_reasons(prefs: Preferences, rules: Rules) -> list[str]:
    reasons = []
    for product in prefs.vaccine_preferences:
        ruling_out = [
            c for c in prefs.conditions if product in rules.contraindications.get(c, frozenset())
        ]
        if ruling_out:
            reasons.append(f"{product} is ruled out by the condition(s) {', '.join(ruling_out)}")
    return reasons
