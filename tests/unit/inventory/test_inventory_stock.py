"""Stock decisions: vials in and out, open vials, waste, doses consumed, recall, expiry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from immunreg.contracts.envelope import Event
from immunreg.contracts.inventory import (
    DoseConsumed,
    DosesWasted,
    OpenedVialExpired,
    StockDiscrepancyDetected,
    StockDispatched,
    StockExpired,
    StockRecalled,
    StockReceived,
    VialOpened,
)
from immunreg.domain import Conflict, DomainError, NotFound
from services.inventory.domain import Lot
from services.inventory.stock import (
    AddVials,
    ConsumeDose,
    ExpireOpenVials,
    ExpireStock,
    OpenVial,
    OpenVials,
    RecallStock,
    Stock,
    StockCommand,
    TakeVials,
    WasteDoses,
    arriving,
    decide_stock,
    evolve_stock,
    open_doses,
    usable_doses,
)

NOW = datetime(2021, 5, 1, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
EXPIRY = date(2021, 8, 31)
SITE = "SITE-0001"
LOT = "EW0150"
COMIRNATY = "EU/1/20/1528"


def add(vials: int = 10, **changes: Any) -> AddVials:
    fields: dict[str, Any] = {
        "location_id": SITE,
        "lot_number": LOT,
        "product_code": COMIRNATY,
        "doses_per_vial": 6,
        "expiry_date": EXPIRY,
        "vials": vials,
    }
    return AddVials(**{**fields, **changes})


def apply(state: Stock, events: Sequence[Event]) -> Stock:
    for event in events:
        state = evolve_stock(state, event)
    return state


def run(state: Stock, *commands: StockCommand) -> tuple[Stock, Sequence[Event]]:
    events: Sequence[Event] = []
    for command in commands:
        events = decide_stock(state, command)
        state = apply(state, events)
    return state, events


def stock(vials: int = 10, **changes: Any) -> Stock:
    return run(Stock(), add(vials, **changes))[0]


def consume(dose_id: str = "d-1", at: datetime = NOW, product: str = COMIRNATY) -> ConsumeDose:
    return ConsumeDose(dose_id=dose_id, site_id=SITE, lot_number=LOT, product_code=product, at=at)


# --- vials in ----------------------------------------------------------------------


def test_vials_arrive_sealed() -> None:
    state, [event] = run(Stock(), add(10, shipment_id="s-1"))
    assert event == StockReceived(
        location_id=SITE,
        lot_number=LOT,
        product_code=COMIRNATY,
        vials=10,
        doses_per_vial=6,
        expiry_date=EXPIRY,
        shipment_id="s-1",
    )
    assert (state.status, state.sealed_vials, usable_doses(state, NOW)) == ("active", 10, 60)
    state, _ = run(state, add(5))
    assert state.sealed_vials == 15


@pytest.mark.parametrize(
    ("lot_status", "then"), [("recalled", StockRecalled), ("expired", StockExpired)]
)
def test_vials_of_a_recalled_or_expired_lot_arrive_unusable(
    lot_status: Any, then: type[Event]
) -> None:
    state, events = run(Stock(), add(4, lot_status=lot_status, recall_reason="r"))
    assert [type(e) for e in events] == [StockReceived, then]
    assert state.status == lot_status and state.sealed_vials == 4
    assert usable_doses(state, NOW) == 0
    more, events = run(state, add(2, lot_status=lot_status))
    assert [type(e) for e in events] == [StockReceived]  # told once
    assert more.sealed_vials == 6


def test_a_shipment_that_arrived_empty_creates_no_stock() -> None:
    assert decide_stock(Stock(), add(0)) == []


# --- vials out ---------------------------------------------------------------------


def test_vials_leave_for_a_shipment() -> None:
    state, [event] = run(
        stock(10), TakeVials(shipment_id="s-1", to_location="SITE-0002", vials=4, today=TODAY)
    )
    assert event == StockDispatched(
        location_id=SITE,
        lot_number=LOT,
        product_code=COMIRNATY,
        vials=4,
        shipment_id="s-1",
        to_location="SITE-0002",
    )
    assert state.sealed_vials == 6


@pytest.mark.parametrize(
    ("state", "vials", "today", "code"),
    [
        (Stock(), 1, TODAY, "insufficient_stock"),
        (stock(3), 4, TODAY, "insufficient_stock"),
        (msgspec.structs.replace(stock(10), status="recalled"), 1, TODAY, "lot_recalled"),
        (msgspec.structs.replace(stock(10), status="expired"), 1, TODAY, "lot_expired"),
        (stock(10), 1, date(2021, 9, 1), "lot_expired"),
    ],
)
def test_no_shipment_of_vials_that_are_not_there_or_not_usable(
    state: Stock, vials: int, today: date, code: str
) -> None:
    with pytest.raises(Conflict) as refused:
        decide_stock(state, TakeVials(shipment_id="s", to_location="X", vials=vials, today=today))
    assert refused.value.code == code


def test_open_vials_are_not_shipped() -> None:
    state, _ = run(stock(1), OpenVials(now=NOW))
    with pytest.raises(Conflict):
        decide_stock(state, TakeVials(shipment_id="s", to_location="X", vials=1, today=TODAY))


# --- opening vials -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "doses", "hours"),
    [
        ("EU/1/20/1528", 6, 6),
        ("EU/1/20/1507", 10, 19),
        ("EU/1/21/1529", 10, 6),
        ("BBIBP-CorV", 1, 1),
        ("Sputnik-V", 5, 2),
    ],
)
def test_an_opened_vial_is_usable_for_the_catalogs_hours(
    product: str, doses: int, hours: int
) -> None:
    state, [event] = run(stock(2, product_code=product, doses_per_vial=doses), OpenVials(now=NOW))
    assert event == VialOpened(
        site_id=SITE,
        lot_number=LOT,
        product_code=product,
        doses=doses,
        usable_until=NOW + timedelta(hours=hours),
    )
    assert state.sealed_vials == 1
    assert state.open_vials == (OpenVial(doses, NOW + timedelta(hours=hours)),)
    assert usable_doses(state, NOW) == 2 * doses
    assert usable_doses(state, NOW + timedelta(hours=hours)) == doses  # the open one ran out


@pytest.mark.parametrize(
    ("state", "now", "error", "code"),
    [
        (Stock(), NOW, NotFound, "stock_not_found"),
        (stock(1, lot_status="recalled"), NOW, Conflict, "lot_recalled"),
        (stock(1, lot_status="expired"), NOW, Conflict, "lot_expired"),
        (stock(1), datetime(2021, 9, 1, tzinfo=UTC), Conflict, "lot_expired"),
        (run(stock(1), OpenVials(now=NOW))[0], NOW, Conflict, "no_sealed_vials"),
    ],
)
def test_no_vial_is_opened_from_a_lot_that_is_not_held_recalled_expired_or_empty(
    state: Stock, now: datetime, error: type[DomainError], code: str
) -> None:
    with pytest.raises(error) as refused:
        decide_stock(state, OpenVials(now=now))
    assert refused.value.code == code


def test_opening_a_vial_first_records_open_vials_that_ran_out_of_time() -> None:
    state, _ = run(stock(2), OpenVials(now=NOW), consume("d-1"))
    later = NOW + timedelta(hours=7)
    state, events = run(state, OpenVials(now=later))
    assert events == [
        OpenedVialExpired(
            site_id=SITE,
            lot_number=LOT,
            product_code=COMIRNATY,
            doses_lost=5,
            usable_until=NOW + timedelta(hours=6),
        ),
        VialOpened(
            site_id=SITE,
            lot_number=LOT,
            product_code=COMIRNATY,
            doses=6,
            usable_until=later + timedelta(hours=6),
        ),
    ]
    assert state.open_vials == (OpenVial(6, later + timedelta(hours=6)),)


# --- waste -------------------------------------------------------------------------


def test_waste_comes_from_open_vials_first() -> None:
    state, events = run(
        stock(2), OpenVials(now=NOW), WasteDoses(doses=2, reason="dropped", now=NOW)
    )
    assert events == [
        DosesWasted(site_id=SITE, lot_number=LOT, product_code=COMIRNATY, doses=2, reason="dropped")
    ]
    assert (state.sealed_vials, open_doses(state), state.doses_wasted) == (1, 4, 2)


def test_a_broken_sealed_vial_is_opened_and_wasted_whole() -> None:
    state, events = run(stock(2), WasteDoses(doses=6, reason="vial_broken", now=NOW))
    assert [type(e) for e in events] == [VialOpened, DosesWasted]
    assert (state.sealed_vials, state.open_vials, usable_doses(state, NOW)) == (1, (), 6)


def test_waste_beyond_the_open_doses_opens_as_many_vials_as_needed() -> None:
    state, events = run(
        stock(3), OpenVials(now=NOW), WasteDoses(doses=8, reason="cold_chain_break", now=NOW)
    )
    assert [type(e) for e in events] == [VialOpened, DosesWasted]
    assert (state.sealed_vials, open_doses(state)) == (1, 4)


@pytest.mark.parametrize(
    ("state", "doses", "error", "code"),
    [
        (stock(1), 7, Conflict, "insufficient_doses"),
        (Stock(), 1, NotFound, "stock_not_found"),
        (stock(1, lot_status="recalled"), 1, Conflict, "lot_recalled"),
    ],
)
def test_waste_refusals(state: Stock, doses: int, error: type[DomainError], code: str) -> None:
    with pytest.raises(error) as refused:
        decide_stock(state, WasteDoses(doses=doses, reason="other", now=NOW))
    assert refused.value.code == code


EMPTIED = run(stock(1), TakeVials(shipment_id="s", to_location="X", vials=1, today=TODAY))[0]


# --- doses administered ------------------------------------------------------------


def test_a_dose_comes_from_the_open_vial() -> None:
    state, events = run(stock(1), OpenVials(now=NOW), consume("d-1"))
    assert events == [
        DoseConsumed(site_id=SITE, lot_number=LOT, product_code=COMIRNATY, dose_id="d-1")
    ]
    assert (open_doses(state), state.doses_consumed) == (5, 1)


def test_a_dose_with_no_open_vial_opens_one() -> None:
    state, events = run(stock(1), consume("d-1"))
    assert [type(e) for e in events] == [VialOpened, DoseConsumed]
    assert (state.sealed_vials, open_doses(state)) == (0, 5)


def test_the_last_dose_empties_the_vial() -> None:
    state = stock(1)
    for i in range(6):
        state, _ = run(state, consume(f"d-{i}"))
    assert (state.sealed_vials, state.open_vials, state.doses_consumed) == (0, (), 6)


def test_the_same_dose_is_consumed_once() -> None:
    state, _ = run(stock(1), consume("d-1"))
    assert decide_stock(state, consume("d-1")) == []
    flagged, _ = run(Stock(), consume("d-2"))
    assert decide_stock(flagged, consume("d-2")) == []


def test_a_dose_given_after_the_open_vial_ran_out_opens_a_fresh_one() -> None:
    state, _ = run(stock(2), consume("d-1"))
    later = NOW + timedelta(hours=6)
    state, events = run(state, consume("d-2", at=later))
    assert [type(e) for e in events] == [OpenedVialExpired, VialOpened, DoseConsumed]
    assert (state.sealed_vials, open_doses(state)) == (0, 5)


@pytest.mark.parametrize(
    ("state", "command", "reason"),
    [
        (Stock(), consume(), "lot_not_held"),
        (stock(1, lot_status="recalled"), consume(), "lot_recalled"),
        (stock(1, lot_status="expired"), consume(), "lot_expired"),
        (stock(1), consume(at=datetime(2021, 9, 1, 10, tzinfo=UTC)), "lot_expired"),
        (stock(1), consume(product="EU/1/20/1507"), "product_mismatch"),
        (EMPTIED, consume(), "no_doses_left"),
    ],
)
def test_a_dose_the_count_cannot_account_for_is_a_discrepancy_not_a_refusal(
    state: Stock, command: ConsumeDose, reason: str
) -> None:
    after, [event] = run(state, command)
    assert event == StockDiscrepancyDetected(
        site_id=SITE,
        lot_number=LOT,
        product_code=command.product_code,
        dose_id=command.dose_id,
        reason=reason,
    )
    assert after.discrepancies == state.discrepancies + 1
    assert (after.sealed_vials, after.open_vials) == (state.sealed_vials, state.open_vials)


# --- time passing, recall ----------------------------------------------------------


def test_only_open_vials_past_their_usable_time_expire() -> None:
    state, _ = run(stock(3), OpenVials(now=NOW), OpenVials(now=NOW + timedelta(hours=2)))
    assert decide_stock(state, ExpireOpenVials(now=NOW + timedelta(hours=5))) == []
    state, events = run(state, ExpireOpenVials(now=NOW + timedelta(hours=6)))
    assert [(e.doses_lost, e.usable_until) for e in events] == [  # type: ignore[attr-defined]
        (6, NOW + timedelta(hours=6))
    ]
    assert state.open_vials == (OpenVial(6, NOW + timedelta(hours=8)),)
    assert state.sealed_vials == 1


def test_a_recall_reaches_the_stock_and_stops_it() -> None:
    state, _ = run(stock(3), OpenVials(now=NOW))
    state, [event] = run(state, RecallStock(reason="particles"))
    assert event == StockRecalled(
        location_id=SITE,
        lot_number=LOT,
        product_code=COMIRNATY,
        reason="particles",
        sealed_vials=2,
        open_doses=6,
    )
    assert (state.status, usable_doses(state, NOW)) == ("recalled", 0)
    assert decide_stock(state, RecallStock(reason="again")) == []
    assert decide_stock(Stock(), RecallStock(reason="r")) == []


def test_an_expired_lot_is_recorded_on_the_stock_once() -> None:
    assert decide_stock(stock(2), ExpireStock(today=EXPIRY)) == []
    state, [event] = run(stock(2), ExpireStock(today=date(2021, 9, 1)))
    assert event == StockExpired(
        location_id=SITE,
        lot_number=LOT,
        product_code=COMIRNATY,
        expiry_date=EXPIRY,
        sealed_vials=2,
        open_doses=0,
    )
    assert state.status == "expired"
    assert decide_stock(state, ExpireStock(today=date(2021, 9, 2))) == []
    assert run(state, RecallStock(reason="r"))[0].status == "recalled"


# --- never negative ----------------------------------------------------------------

_commands = st.one_of(
    st.builds(add, st.integers(0, 3)),
    st.builds(
        lambda n: TakeVials(shipment_id="s", to_location="X", vials=n, today=TODAY),
        st.integers(1, 4),
    ),
    st.builds(lambda h: OpenVials(now=NOW + timedelta(hours=h)), st.integers(0, 12)),
    st.builds(
        lambda n, h: WasteDoses(doses=n, reason="other", now=NOW + timedelta(hours=h)),
        st.integers(1, 14),
        st.integers(0, 12),
    ),
    st.builds(
        lambda i, h: consume(f"d-{i}", at=NOW + timedelta(hours=h)),
        st.integers(0, 40),
        st.integers(0, 12),
    ),
    st.builds(lambda h: ExpireOpenVials(now=NOW + timedelta(hours=h)), st.integers(0, 12)),
    st.just(RecallStock(reason="r")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_commands, max_size=40))
def test_stock_never_goes_negative_and_every_dose_is_accounted_for(
    commands: list[StockCommand],
) -> None:
    state = Stock()
    received = given_out = 0
    for command in commands:
        try:
            events = decide_stock(state, command)
        except DomainError:
            continue
        for event in events:
            if isinstance(event, StockReceived):
                received += event.vials * event.doses_per_vial
            elif isinstance(event, StockDispatched):
                given_out += event.vials * state.doses_per_vial
            elif isinstance(event, OpenedVialExpired):
                given_out += event.doses_lost
        state = apply(state, events)
        assert state.sealed_vials >= 0
        assert all(v.doses_left > 0 for v in state.open_vials)
        in_stock = state.sealed_vials * state.doses_per_vial + open_doses(state)
        assert received == in_stock + given_out + state.doses_consumed + state.doses_wasted


@pytest.mark.parametrize(
    ("status", "today", "expected"),
    [
        ("active", EXPIRY, "active"),
        ("active", date(2021, 9, 1), "expired"),  # not yet swept, but past its date
        ("recalled", TODAY, "recalled"),
        ("expired", TODAY, "expired"),
    ],
)
def test_vials_arrive_with_the_lots_status_as_of_today(
    status: Any, today: date, expected: str
) -> None:
    lot = Lot(
        lot_number=LOT,
        product_code=COMIRNATY,
        expiry_date=EXPIRY,
        doses_per_vial=6,
        status=status,
        recall_reason="particles" if status == "recalled" else None,
    )
    command = arriving(lot, SITE, 3, today=today, shipment_id="s-1")
    assert (command.lot_status, command.vials, command.shipment_id) == (expected, 3, "s-1")
    state, _ = run(Stock(), command)
    assert state.status == expected
