"""Field rules of registrations and updates: every bad field reported once, pure."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
import pytest

from services.registration import jmbg
from services.registration.domain import CitizenState, Preferences
from services.registration.rules import (
    Contact,
    Rules,
    check_registration,
    check_update,
    contact_after,
    normalize_email,
    normalize_phone,
    reference_rules,
)
from services.registration.schemas import RegisterCitizen, UpdateCitizen

TODAY = date(2021, 3, 1)
BORN = date(1958, 7, 14)

RULES = Rules(
    municipalities=frozenset({"70092", "80012"}),
    priority_groups=frozenset({"general", "health_worker"}),
    contraindications={"pregnancy": frozenset({"Sputnik-V"}), "diabetes": frozenset()},
    products=frozenset({"EU/1/20/1528", "Sputnik-V"}),
)


def body(**changes: Any) -> RegisterCitizen:
    values: dict[str, Any] = {
        "national_id": jmbg.make(BORN, 71, 612),
        "given_name": "Jelena",
        "family_name": "Petrović",
        "birth_date": BORN.isoformat(),
        "sex": "female",
        "municipality_code": "70092",
        "phone": "+381641234567",
        "email": None,
        "priority_group": "general",
        "conditions": ["diabetes"],
        "vaccine_preferences": ["EU/1/20/1528"],
        "consent": {"data_processing": True},
    }
    values.update(changes)
    return msgspec.convert(values, RegisterCitizen)


def fields(violations: list[Any]) -> dict[str, str]:
    found = [v.field for v in violations]
    assert len(found) == len(set(found)), f"one entry per field: {violations}"
    return {v.field: v.reason for v in violations}


def test_a_good_registration_has_no_violations() -> None:
    assert check_registration(body(), TODAY, RULES) == []


def test_the_shipped_reference_lists_are_used_by_default() -> None:
    rules = reference_rules()
    assert "health_worker" in rules.priority_groups
    assert "severe_allergy_peg" in rules.conditions
    assert "EU/1/20/1528" in rules.products
    assert check_registration(body(), TODAY, rules) == []


def test_every_bad_field_is_reported_at_once() -> None:
    bad = body(
        national_id="0101990710009",
        given_name="  ",
        birth_date="2022-01-01",
        municipality_code="99999",
        preferred_municipality_code="11111",
        phone="12",
        email="not-an-address",
        priority_group="vip",
        conditions=["diabetes", "gout", "diabetes"],
        vaccine_preferences=["any", "Sputnik-V"],
        consent={"data_processing": False},
    )
    found = fields(check_registration(bad, TODAY, RULES))
    assert set(found) == {
        "national_id",
        "given_name",
        "birth_date",
        "municipality_code",
        "preferred_municipality_code",
        "phone",
        "email",
        "priority_group",
        "conditions",
        "vaccine_preferences",
        "consent.data_processing",
    }
    assert "check digit" in found["national_id"]
    assert "future" in found["birth_date"]
    assert "gout" in found["conditions"] and "more than once" in found["conditions"]
    assert "stand alone" in found["vaccine_preferences"]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"birth_date": "1958-07-15"}, "national_id", "encodes the birth date 1958-07-14"),
        ({"sex": "male"}, "sex", "female"),
        ({"phone": None, "email": None}, "phone", "phone number or an e-mail"),
        ({"given_name": "J" * 101}, "given_name", "at most 100"),
        ({"family_name": "R2D2"}, "family_name", "digits"),
        ({"vaccine_preferences": []}, "vaccine_preferences", "at least one"),
        ({"vaccine_preferences": ["XYZ"]}, "vaccine_preferences", "unknown product"),
        (
            {"conditions": ["pregnancy"], "vaccine_preferences": ["Sputnik-V"]},
            "vaccine_preferences",
            "ruled out by the condition(s) pregnancy",
        ),
    ],
)
def test_single_rules(changes: dict[str, Any], field: str, reason: str) -> None:
    found = fields(check_registration(body(**changes), TODAY, RULES))
    assert list(found) == [field]
    assert reason in found[field]


def test_sex_other_is_accepted_with_any_serial() -> None:
    assert check_registration(body(sex="other"), TODAY, RULES) == []


def test_age_over_130_is_refused() -> None:
    born = date(1900, 1, 1)
    old = body(national_id=jmbg.make(born, 71, 100), birth_date=born.isoformat(), sex="male")
    assert fields(check_registration(old, date(2031, 1, 1), RULES)) == {
        "birth_date": "means an age over 130"
    }
    assert check_registration(old, date(2030, 12, 31), RULES) == []


def test_birth_dates_before_1900_are_refused() -> None:
    found = fields(check_registration(body(birth_date="1899-12-31"), TODAY, RULES))
    assert "before 1900" in found["birth_date"]
    assert "encodes the birth date" in found["national_id"]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("+381641234567", "+381641234567"),
        ("064 123-4567", "+381641234567"),
        ("00381 (64) 123 4567", "+381641234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("12", None),
        ("+0123456789", None),
        ("phone me", None),
        ("", None),
    ],
)
def test_phone_numbers(raw: str, normalized: str | None) -> None:
    assert normalize_phone(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Jelena.P@Example.RS", "Jelena.P@example.rs"),
        (" a@b.co ", "a@b.co"),
        ("a@b", None),
        ("a b@c.rs", None),
        ("@c.rs", None),
        ("a@@c.rs", None),
    ],
)
def test_email_addresses(raw: str, normalized: str | None) -> None:
    assert normalize_email(raw) == normalized


ACTIVE = CitizenState(
    status="active",
    preferences=Preferences(
        priority_group="general", conditions=[], vaccine_preferences=["Sputnik-V"]
    ),
)


def update(**values: Any) -> UpdateCitizen:
    return msgspec.convert(values, UpdateCitizen)


def test_update_is_judged_on_the_values_after_it() -> None:
    contact = Contact(phone="+381641234567", email=None)
    assert check_update(update(email="x@y.rs", phone=None), ACTIVE, contact, RULES) == []
    found = fields(check_update(update(phone=None), ACTIVE, contact, RULES))
    assert list(found) == ["phone"]
    # A new condition that rules out a preference already held is reported on the preference.
    found = fields(check_update(update(conditions=["pregnancy"]), ACTIVE, None, RULES))
    assert list(found) == ["vaccine_preferences"]
    found = fields(
        check_update(
            update(priority_group="vip", preferred_municipality_code="1", phone="1"),
            ACTIVE,
            contact,
            RULES,
        )
    )
    assert set(found) == {"priority_group", "preferred_municipality_code", "phone"}


def test_update_does_not_judge_fields_it_leaves_alone() -> None:
    legacy = msgspec.structs.replace(
        ACTIVE, preferences=Preferences(priority_group="retired_group", vaccine_preferences=["any"])
    )
    assert check_update(update(conditions=["diabetes"]), legacy, None, RULES) == []


def test_contact_after_normalizes_and_keeps_what_is_not_named() -> None:
    contact = Contact(phone="+381641234567", email="old@x.rs")
    assert contact_after(update(email="New@X.RS"), contact) == Contact("+381641234567", "New@x.rs")
    assert contact_after(update(phone="065 1112223"), contact) == Contact(
        "+381651112223", "old@x.rs"
    )
    assert contact_after(update(phone=None), contact) == Contact(None, "old@x.rs")
