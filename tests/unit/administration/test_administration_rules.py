"""Every rule a dose is checked against, each with a table of cases; pure."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from immunreg.reference.calendar import age_on, local_date
from immunreg.reference.vaccines import vaccine_catalog
from services.administration.rules import (
    CitizenFacts,
    DoseRequest,
    LotFacts,
    PriorDose,
    Violation,
    check_age,
    check_citizen,
    check_dose,
    check_dose_sequence,
    check_interval,
    check_lot_at_site,
    check_lot_not_expired,
    check_lot_not_recalled,
    check_product_known,
    check_product_matches_lot,
)

CATALOG = vaccine_catalog()
COMIRNATY = CATALOG["EU/1/20/1528"]  # series 2, 21 days, booster 90 days, 12+
SPIKEVAX = CATALOG["EU/1/20/1507"]  # 18+
AT = datetime(2021, 6, 1, 10, 0, tzinfo=UTC)  # 12:00 in Belgrade


def code(violation: Violation | None) -> str | None:
    return violation.code if violation else None


def citizen(status: str = "active", born: date | None = date(1970, 5, 5)) -> CitizenFacts:
    return CitizenFacts(
        citizen_id="c-1",
        status=status,  # type: ignore[arg-type]
        birth_date=born,
        sex="female" if born else None,
        municipality_code="70092" if born else None,
    )


def lot(**changes: object) -> LotFacts:
    values: dict[str, object] = {
        "lot_number": "FA1234",
        "product_code": "EU/1/20/1528",
        "expiry_date": date(2021, 6, 30),
        "recalled_at": None,
        "expired": False,
        "at_site": True,
    }
    values.update(changes)
    return LotFacts(**values)  # type: ignore[arg-type]


def prior(number: int, days_before: int, product: str = "EU/1/20/1528") -> PriorDose:
    return PriorDose(f"d{number}", number, product, AT - timedelta(days=days_before))


@pytest.mark.parametrize(
    ("facts", "expected", "overridable"),
    [
        (citizen(), None, None),
        (citizen("withdrawn"), None, None),  # withdrawing interest is not refusing a dose
        (None, "citizen_unknown", False),
        (citizen(born=None), "citizen_unknown", False),  # heard of a withdrawal only
        (citizen("erased", born=None), "citizen_erased", False),
    ],
)
def test_citizen_must_be_known_and_not_erased(
    facts: CitizenFacts | None, expected: str | None, overridable: bool | None
) -> None:
    found = check_citizen(facts)
    assert code(found) == expected
    if found:
        assert found.overridable is overridable and found.field == "citizen_id"


@pytest.mark.parametrize(
    ("product", "born", "moment", "expected"),
    [
        (COMIRNATY, date(2009, 6, 1), AT, None),  # 12 on the day
        (COMIRNATY, date(2009, 6, 2), AT, "age_below_minimum"),  # 12 tomorrow
        (SPIKEVAX, date(2003, 6, 1), AT, None),  # 18 on the day
        (SPIKEVAX, date(2004, 1, 1), AT, "age_below_minimum"),
        # 23:30 UTC on 31 May is 1 June in Belgrade: the birthday has come.
        (SPIKEVAX, date(2003, 6, 1), datetime(2021, 5, 31, 23, 30, tzinfo=UTC), None),
        (SPIKEVAX, None, AT, None),  # unknown birth date: the citizen rule speaks
    ],
)
def test_age_limits_of_the_product(
    product: object, born: date | None, moment: datetime, expected: str | None
) -> None:
    assert code(check_age(born, moment, product)) == expected  # type: ignore[arg-type]


def test_age_above_maximum() -> None:
    limited = COMIRNATY.__class__(
        **{f: getattr(COMIRNATY, f) for f in COMIRNATY.__struct_fields__} | {"max_age": 65}
    )
    assert code(check_age(date(1950, 1, 1), AT, limited)) == "age_above_maximum"
    assert code(check_age(date(1960, 1, 1), AT, limited)) is None


@pytest.mark.parametrize(
    ("born", "day", "age"),
    [
        (date(2000, 3, 1), date(2021, 2, 28), 20),
        (date(2000, 3, 1), date(2021, 3, 1), 21),
        (date(2000, 2, 29), date(2021, 2, 28), 20),
        (date(2000, 2, 29), date(2021, 3, 1), 21),
    ],
)
def test_age_in_completed_years(born: date, day: date, age: int) -> None:
    assert age_on(born, day) == age


@pytest.mark.parametrize(
    ("code_", "expected"),
    [("EU/1/20/1528", None), ("Sputnik-V", None), ("NOT-A-VACCINE", "product_unknown")],
)
def test_product_must_be_in_the_catalog(code_: str, expected: str | None) -> None:
    found = check_product_known(CATALOG.get(code_), code_)
    assert code(found) == expected
    assert found is None or found.overridable is False


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (lot(), None),
        (lot(at_site=False), "lot_not_at_site"),  # known, but at another location
        (None, "lot_not_at_site"),  # never mentioned by inventory
    ],
)
def test_lot_must_be_at_the_site(facts: LotFacts | None, expected: str | None) -> None:
    assert code(check_lot_at_site(facts, "SITE-0001")) == expected


@pytest.mark.parametrize(
    ("facts", "product", "expected"),
    [
        (lot(), "EU/1/20/1528", None),
        (lot(), "EU/1/20/1507", "product_mismatch"),
        (lot(product_code=None), "EU/1/20/1507", None),  # recall-only knowledge: no product
        (None, "EU/1/20/1507", None),  # unknown lot: lot_not_at_site speaks
    ],
)
def test_product_must_match_the_lot(
    facts: LotFacts | None, product: str, expected: str | None
) -> None:
    assert code(check_product_matches_lot(facts, product)) == expected


@pytest.mark.parametrize(
    ("facts", "moment", "expected"),
    [
        (lot(expiry_date=date(2021, 6, 1)), AT, None),  # usable on its expiry date
        (lot(expiry_date=date(2021, 5, 31)), AT, "lot_expired"),
        # 22:30 UTC on 31 May is already 1 June in Belgrade.
        (
            lot(expiry_date=date(2021, 5, 31)),
            datetime(2021, 5, 31, 22, 30, tzinfo=UTC),
            "lot_expired",
        ),
        (lot(expiry_date=date(2021, 5, 31)), datetime(2021, 5, 31, 21, 30, tzinfo=UTC), None),
        (lot(expiry_date=None, expired=True), AT, "lot_expired"),
        (lot(expiry_date=None, expired=False), AT, None),
        # LotExpired arrived, but the dose was given before the expiry date (back-entry).
        (lot(expiry_date=date(2021, 6, 30), expired=True), AT, None),
        (None, AT, None),
    ],
)
def test_lot_must_not_be_expired(
    facts: LotFacts | None, moment: datetime, expected: str | None
) -> None:
    assert code(check_lot_not_expired(facts, moment)) == expected


@pytest.mark.parametrize(
    ("recalled_at", "expected"),
    [
        (None, None),
        (AT - timedelta(days=1), "lot_recalled"),
        (AT, "lot_recalled"),
        (AT + timedelta(hours=1), None),  # given before the recall, recorded after it
    ],
)
def test_lot_must_not_be_recalled(recalled_at: datetime | None, expected: str | None) -> None:
    assert code(check_lot_not_recalled(lot(recalled_at=recalled_at), AT)) == expected


@pytest.mark.parametrize(
    ("history", "number", "expected"),
    [
        ([], 1, None),
        ([], 2, "dose_number_out_of_sequence"),
        ([prior(1, 30)], 2, None),
        ([prior(1, 30)], 1, "dose_number_out_of_sequence"),  # dose 1 again
        ([prior(1, 30)], 3, "dose_number_out_of_sequence"),  # skips dose 2
        ([prior(1, 200), prior(2, 100)], 3, None),  # the first booster
        ([prior(1, 200), prior(2, 100)], 2, "dose_number_out_of_sequence"),
    ],
)
def test_dose_number_follows_the_history(
    history: list[PriorDose], number: int, expected: str | None
) -> None:
    assert code(check_dose_sequence(history, number)) == expected


@pytest.mark.parametrize(
    ("history", "number", "expected"),
    [
        ([], 1, None),
        ([prior(1, 21)], 2, None),  # Comirnaty: 21 days
        ([prior(1, 20)], 2, "interval_too_short"),
        ([prior(1, 200), prior(2, 90)], 3, None),  # booster: 90 days after the series
        ([prior(1, 200), prior(2, 89)], 3, "interval_too_short"),
        ([prior(1, -3)], 2, "interval_too_short"),  # before the previous dose
    ],
)
def test_minimum_interval_since_the_previous_dose(
    history: list[PriorDose], number: int, expected: str | None
) -> None:
    assert code(check_interval(history, number, AT, COMIRNATY)) == expected


def test_interval_counts_calendar_days_in_serbia() -> None:
    # Dose 1 at 23:30 Belgrade on 11 May; dose 2 at 00:30 Belgrade on 1 June: 21 days.
    first = datetime(2021, 5, 11, 21, 30, tzinfo=UTC)
    second = datetime(2021, 5, 31, 22, 30, tzinfo=UTC)
    assert (local_date(first), local_date(second)) == (date(2021, 5, 11), date(2021, 6, 1))
    history = [PriorDose("d1", 1, "EU/1/20/1528", first)]
    assert check_interval(history, 2, second, COMIRNATY) is None


def test_check_dose_reports_every_rule_broken_at_once() -> None:
    request = DoseRequest(
        citizen_id="c-1",
        site_id="SITE-0001",
        lot_number="FA1234",
        product_code="EU/1/20/1507",
        dose_number=2,
        administered_at=AT,
    )
    found = check_dose(
        request,
        citizen(born=date(2005, 1, 1)),
        lot(at_site=False, expiry_date=date(2021, 5, 1), recalled_at=AT - timedelta(days=2)),
        [prior(1, 10)],
        CATALOG,
    )
    assert [v.code for v in found] == [
        "lot_not_at_site",
        "product_mismatch",
        "lot_expired",
        "lot_recalled",
        "interval_too_short",
        "age_below_minimum",
    ]
    assert all(v.overridable for v in found)


def test_check_dose_passes_a_good_dose() -> None:
    request = DoseRequest("c-1", "SITE-0001", "FA1234", "EU/1/20/1528", 2, AT)
    assert check_dose(request, citizen(), lot(), [prior(1, 28)], CATALOG) == []


def test_check_dose_with_unknown_citizen_and_product() -> None:
    request = DoseRequest("c-9", "SITE-0001", "FA1234", "NOPE", 1, AT)
    found = check_dose(request, None, lot(), [], CATALOG)
    assert [v.code for v in found] == ["citizen_unknown", "product_unknown", "product_mismatch"]
    assert [v.overridable for v in found] == [False, False, True]
