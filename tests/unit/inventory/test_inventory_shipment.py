"""Shipment decisions: created -> dispatched -> received (in full, or partly and the rest lost)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from immunreg.contracts.envelope import Event
from immunreg.contracts.inventory import ShipmentCreated, ShipmentDispatched, ShipmentReceived
from immunreg.domain import Conflict, DomainError, NotFound, RuleViolation
from services.inventory.domain import (
    CreateShipment,
    DispatchShipment,
    ReceiveShipment,
    Shipment,
    ShipmentCommand,
    decide_shipment,
    evolve_shipment,
)

CREATE = CreateShipment(
    shipment_id="s-1",
    lot_number="EW0150",
    product_code="EU/1/20/1528",
    from_location="WH-NATIONAL",
    to_location="SITE-0001",
    vials=10,
)


def run(*commands: ShipmentCommand) -> tuple[Shipment, Sequence[Event]]:
    state = Shipment()
    events: Sequence[Event] = []
    for command in commands:
        events = decide_shipment(state, command)
        for event in events:
            state = evolve_shipment(state, event)
    return state, events


def test_a_shipment_is_created_then_dispatched() -> None:
    created, [event] = run(CREATE)
    assert event == ShipmentCreated(
        shipment_id="s-1",
        lot_number="EW0150",
        product_code="EU/1/20/1528",
        from_location="WH-NATIONAL",
        to_location="SITE-0001",
        vials=10,
    )
    assert created.status == "created"
    dispatched, [event] = run(CREATE, DispatchShipment())
    assert event == ShipmentDispatched(
        shipment_id="s-1",
        lot_number="EW0150",
        product_code="EU/1/20/1528",
        from_location="WH-NATIONAL",
        to_location="SITE-0001",
        vials=10,
    )
    assert dispatched.status == "dispatched"


@pytest.mark.parametrize(
    ("receipt", "received", "lost", "reason"),
    [
        (ReceiveShipment(vials_received=10), 10, 0, None),
        (ReceiveShipment(vials_received=7), 7, 3, "lost_in_transit"),
        (ReceiveShipment(vials_received=8, vials_lost=2, loss_reason="broken"), 8, 2, "broken"),
        (ReceiveShipment(vials_received=0, vials_lost=10, loss_reason="stolen"), 0, 10, "stolen"),
    ],
)
def test_a_receipt_records_what_arrived_and_what_was_lost(
    receipt: ReceiveShipment, received: int, lost: int, reason: str | None
) -> None:
    state, [event] = run(CREATE, DispatchShipment(), receipt)
    assert event == ShipmentReceived(
        shipment_id="s-1",
        lot_number="EW0150",
        product_code="EU/1/20/1528",
        to_location="SITE-0001",
        vials_received=received,
        vials_lost=lost,
        from_location="WH-NATIONAL",
        loss_reason=reason,
    )
    assert (state.status, state.vials_received, state.vials_lost) == ("received", received, lost)


@pytest.mark.parametrize(
    ("commands", "error", "code"),
    [
        ((CREATE, CREATE), Conflict, "shipment_exists"),
        (
            (
                CreateShipment(
                    shipment_id="s-1",
                    lot_number="L",
                    product_code="P",
                    from_location="WH-NATIONAL",
                    to_location="WH-NATIONAL",
                    vials=1,
                ),
            ),
            RuleViolation,
            "same_location",
        ),
        ((DispatchShipment(),), NotFound, "shipment_not_found"),
        ((ReceiveShipment(vials_received=1),), NotFound, "shipment_not_found"),
        ((CREATE, DispatchShipment(), DispatchShipment()), Conflict, "shipment_already_dispatched"),
        ((CREATE, ReceiveShipment(vials_received=10)), Conflict, "shipment_not_dispatched"),
        (
            (
                CREATE,
                DispatchShipment(),
                ReceiveShipment(vials_received=10),
                ReceiveShipment(vials_received=10),
            ),
            Conflict,
            "shipment_already_received",
        ),
        (
            (CREATE, DispatchShipment(), ReceiveShipment(vials_received=10), DispatchShipment()),
            Conflict,
            "shipment_already_dispatched",
        ),
        (
            (CREATE, DispatchShipment(), ReceiveShipment(vials_received=11)),
            RuleViolation,
            "more_than_shipped",
        ),
        (
            (CREATE, DispatchShipment(), ReceiveShipment(vials_received=7, vials_lost=2)),
            RuleViolation,
            "vials_unaccounted",
        ),
    ],
)
def test_shipment_refusals(
    commands: tuple[ShipmentCommand, ...], error: type[DomainError], code: str
) -> None:
    with pytest.raises(error) as refused:
        run(*commands)
    assert refused.value.code == code
