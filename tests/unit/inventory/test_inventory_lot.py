"""Lot decisions: receive (checked against the vaccine catalog), recall, expire."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
import pytest

from immunreg.contracts.inventory import LotExpired, LotRecalled, LotReceived
from immunreg.domain import Conflict, DomainError, NotFound, RuleViolation
from services.inventory.domain import (
    ExpireLot,
    Lot,
    RecallLot,
    ReceiveLot,
    decide_lot,
    evolve_lot,
    is_expired,
)

TODAY = date(2021, 5, 1)
COMIRNATY = {
    "lot_number": "EW0150",
    "product_code": "EU/1/20/1528",
    "manufacturer_code": "ORG-100030215",
    "expiry_date": date(2021, 8, 31),
    "vials": 195,
    "today": TODAY,
}


def receive(**changes: Any) -> ReceiveLot:
    return ReceiveLot(**{**COMIRNATY, **changes})


def received(**changes: Any) -> Lot:
    state = Lot()
    for event in decide_lot(state, receive(**changes)):
        state = evolve_lot(state, event)
    return state


def test_a_lot_is_received_with_the_catalogs_doses_per_vial_and_storage() -> None:
    [event] = decide_lot(Lot(), receive())
    assert event == LotReceived(
        lot_number="EW0150",
        product_code="EU/1/20/1528",
        manufacturer_code="ORG-100030215",
        expiry_date=date(2021, 8, 31),
        vials=195,
        doses_per_vial=6,
        storage="ultra_cold",
        location_id="WH-NATIONAL",
    )
    state = evolve_lot(Lot(), event)
    assert state.status == "active" and state.doses_per_vial == 6


@pytest.mark.parametrize(
    ("product_code", "manufacturer_code", "doses_per_vial"),
    [
        ("EU/1/20/1528", "ORG-100030215", 6),
        ("EU/1/20/1507", "ORG-100031184", 10),
        ("EU/1/21/1529", "ORG-100001699", 10),
        ("BBIBP-CorV", "ORG-100020693", 1),
        ("Sputnik-V", "Gamaleya-Research-Institute", 5),
    ],
)
def test_every_product_serbia_used_can_be_received(
    product_code: str, manufacturer_code: str, doses_per_vial: int
) -> None:
    [event] = decide_lot(
        Lot(),
        receive(
            product_code=product_code,
            manufacturer_code=manufacturer_code,
            doses_per_vial=doses_per_vial,
            location_id="WH-RS-00",
        ),
    )
    assert isinstance(event, LotReceived)
    assert event.doses_per_vial == doses_per_vial and event.location_id == "WH-RS-00"


@pytest.mark.parametrize(
    ("changes", "error", "code", "field"),
    [
        ({"product_code": "EU/1/99/0000"}, RuleViolation, "unknown_product", "product_code"),
        (
            {"manufacturer_code": "ORG-1"},
            RuleViolation,
            "manufacturer_mismatch",
            "manufacturer_code",
        ),
        ({"doses_per_vial": 5}, RuleViolation, "doses_per_vial_mismatch", "doses_per_vial"),
        ({"expiry_date": date(2021, 4, 30)}, RuleViolation, "expired_on_arrival", "expiry_date"),
    ],
)
def test_a_lot_that_does_not_match_the_catalog_is_refused(
    changes: dict[str, Any], error: type[DomainError], code: str, field: str
) -> None:
    with pytest.raises(error) as refused:
        decide_lot(Lot(), receive(**changes))
    assert (refused.value.code, refused.value.field) == (code, field)


def test_a_lot_expiring_today_may_still_be_received() -> None:
    assert decide_lot(Lot(), receive(expiry_date=TODAY))


def test_a_lot_number_is_received_once() -> None:
    with pytest.raises(Conflict) as refused:
        decide_lot(received(), receive())
    assert refused.value.code == "lot_already_received"


def test_a_recall_names_the_locations_told() -> None:
    [event] = decide_lot(received(), RecallLot(reason="particles", locations=("SITE-0001",)))
    assert event == LotRecalled(
        lot_number="EW0150",
        product_code="EU/1/20/1528",
        reason="particles",
        locations=["SITE-0001"],
    )
    state = evolve_lot(received(), event)
    assert (state.status, state.recall_reason) == ("recalled", "particles")


@pytest.mark.parametrize(
    ("state", "error", "code"),
    [
        (Lot(), NotFound, "lot_not_found"),
        (
            msgspec.structs.replace(received(), status="recalled"),
            Conflict,
            "lot_already_recalled",
        ),
    ],
)
def test_recall_refusals(state: Lot, error: type[DomainError], code: str) -> None:
    with pytest.raises(error) as refused:
        decide_lot(state, RecallLot(reason="r"))
    assert refused.value.code == code


def test_an_expired_lot_can_still_be_recalled() -> None:
    expired = msgspec.structs.replace(received(), status="expired")
    assert decide_lot(expired, RecallLot(reason="r"))


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2021, 8, 30), False),
        (date(2021, 8, 31), False),  # usable through its expiry date
        (date(2021, 9, 1), True),
    ],
)
def test_a_lot_expires_the_day_after_its_expiry_date(today: date, expected: bool) -> None:
    assert is_expired(date(2021, 8, 31), today) is expected
    events = decide_lot(received(), ExpireLot(today=today))
    assert events == (
        [
            LotExpired(
                lot_number="EW0150", product_code="EU/1/20/1528", expiry_date=date(2021, 8, 31)
            )
        ]
        if expected
        else []
    )


def test_expiry_is_recorded_once_and_never_for_a_recalled_lot() -> None:
    later = ExpireLot(today=date(2022, 1, 1))
    [event] = decide_lot(received(), later)
    expired = evolve_lot(received(), event)
    assert expired.status == "expired"
    assert decide_lot(expired, later) == []
    recalled = msgspec.structs.replace(received(), status="recalled")
    assert decide_lot(recalled, later) == []
    assert evolve_lot(recalled, event).status == "recalled"


def test_expiring_an_unknown_lot_is_not_found() -> None:
    with pytest.raises(NotFound):
        decide_lot(Lot(), ExpireLot(today=TODAY))
