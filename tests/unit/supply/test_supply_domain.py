"""Supply's decisions (services/supply/domain.py): contracts, runs, replenishment."""

from __future__ import annotations

from datetime import date

import pytest

from immunreg.contracts.supply import (
    CONTEXT,
    AllocationApproved,
    AllocationProposed,
    AllocationRunDecided,
    DeliveredLot,
    LineReasons,
    ProductBalance,
    ProposedShipment,
    ReplenishmentAlertCleared,
    ReplenishmentAlertRaised,
    Tranche,
)
from immunreg.domain import Conflict, DomainError, NotFound, RuleViolation
from immunreg.reference.vaccines import vaccine_catalog
from services.supply.domain import (
    AllocationRun,
    Contract,
    DecideRun,
    LineDecision,
    ObserveSupply,
    ReceiveDelivery,
    RecordContract,
    RecordProposal,
    Replenishment,
    RequestRun,
    RunCommand,
    contract_position,
    decide_contract,
    decide_replenishment,
    decide_run,
    evolve_contract,
    evolve_replenishment,
    evolve_run,
)

COMIRNATY = vaccine_catalog()["EU/1/20/1528"]
TODAY = date(2026, 3, 1)


def contract(**changes: object) -> RecordContract:
    values: dict[str, object] = {
        "contract_id": "C1",
        "manufacturer_code": COMIRNATY.manufacturer_code,
        "product_code": COMIRNATY.product_code,
        "total_doses": 1200,
        "tranches": (
            Tranche(tranche_id="T2", expected_date=date(2026, 4, 1), doses=600),
            Tranche(tranche_id="T1", expected_date=date(2026, 2, 1), doses=600),
        ),
    }
    values.update(changes)
    return RecordContract(**values)  # type: ignore[arg-type]


def recorded(**changes: object) -> Contract:
    state = Contract()
    for event in decide_contract(state, contract(**changes)):
        state = evolve_contract(state, event)
    return state


def delivery(vials: int = 50, lot: str = "LOT-1", **changes: object) -> ReceiveDelivery:
    values: dict[str, object] = {
        "delivery_id": "D1",
        "location_id": "WH-NATIONAL",
        "received_on": TODAY,
        "lots": (
            DeliveredLot(
                lot_number=lot,
                expiry_date=date(2026, 9, 1),
                vials=vials,
                doses_per_vial=6,
                storage="ultra_cold",
            ),
        ),
    }
    values.update(changes)
    return ReceiveDelivery(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"product_code": "EU/1/99/0000"}, "unknown_product", "product_code"),
        ({"manufacturer_code": "ORG-1"}, "manufacturer_mismatch", "manufacturer_code"),
        ({"total_doses": 1000}, "tranches_do_not_add_up", "tranches"),
        (
            {
                "total_doses": 2,
                "tranches": (
                    Tranche(tranche_id="T", expected_date=TODAY, doses=1),
                    Tranche(tranche_id="T", expected_date=TODAY, doses=1),
                ),
            },
            "duplicate_tranche",
            "tranches",
        ),
    ],
)
def test_a_contract_that_breaks_a_rule_is_refused(
    changes: dict[str, object], code: str, field: str
) -> None:
    with pytest.raises(RuleViolation) as refused:
        decide_contract(Contract(), contract(**changes))
    assert (refused.value.code, refused.value.field) == (code, field)


def test_deliveries_fill_tranches_earliest_first_and_a_past_tranche_is_late() -> None:
    state = recorded()
    assert [t.tranche_id for t in state.tranches] == ["T1", "T2"]
    (event,) = decide_contract(state, delivery(vials=50))
    state = evolve_contract(state, event)
    position = contract_position(state, TODAY)
    assert (position.delivered, position.outstanding, position.late) == (300, 900, 300)
    assert [(t.delivered, t.late) for t in position.tranches] == [(300, True), (0, False)]


@pytest.mark.parametrize(
    ("command", "error", "code"),
    [
        (delivery(vials=201), RuleViolation, "over_delivery"),
        (
            delivery(
                lots=(
                    DeliveredLot(
                        lot_number="X",
                        expiry_date=TODAY,
                        vials=1,
                        doses_per_vial=6,
                        storage="ultra_cold",
                    ),
                )
            ),
            RuleViolation,
            "expired_on_arrival",
        ),
        (
            delivery(
                lots=(
                    DeliveredLot(
                        lot_number="X",
                        expiry_date=date(2026, 9, 1),
                        vials=1,
                        doses_per_vial=10,
                        storage="ultra_cold",
                    ),
                )
            ),
            RuleViolation,
            "doses_per_vial_mismatch",
        ),
    ],
)
def test_a_delivery_that_breaks_a_rule_is_refused(
    command: ReceiveDelivery, error: type[DomainError], code: str
) -> None:
    with pytest.raises(error) as refused:
        decide_contract(recorded(), command)
    assert refused.value.code == code


def test_a_lot_or_delivery_is_received_once_and_only_against_a_contract() -> None:
    state = recorded()
    state = evolve_contract(state, decide_contract(state, delivery())[0])
    with pytest.raises(Conflict, match="already received"):
        decide_contract(state, delivery())
    with pytest.raises(Conflict) as again:
        decide_contract(state, delivery(delivery_id="D2"))
    assert again.value.code == "lot_already_received"
    with pytest.raises(NotFound):
        decide_contract(Contract(), delivery())


def line(number: int, vials: int = 4, leaves_behind: int = 2) -> ProposedShipment:
    return ProposedShipment(
        line=number,
        lot_number="LOT-1",
        product_code=COMIRNATY.product_code,
        from_location="WH-NATIONAL",
        to_location=f"SITE-{number}",
        vials=vials,
        doses=vials * 6,
        expiry_date=date(2026, 9, 1),
        why=LineReasons(
            booked=10,
            waiting=0,
            on_hand=0,
            in_transit=0,
            for_booked=vials * 6,
            for_waiting=0,
            first_use=TODAY,
            last_use=TODAY,
            leaves_behind=leaves_behind,
        ),
    )


def proposed(lines: int = 3) -> AllocationRun:
    state = AllocationRun()
    balance = ProductBalance(
        product_code=COMIRNATY.product_code,
        booked=30,
        booked_covered=30,
        waiting=0,
        waiting_covered=0,
        shipped_doses=72,
        due_from_contracts=0,
    )
    commands: list[RunCommand] = [
        RequestRun(run_id="R1", from_day=TODAY, horizon_days=7, today=TODAY),
        RecordProposal(lines=tuple(line(n) for n in range(1, lines + 1)), balances=(balance,)),
    ]
    for command in commands:
        for event in decide_run(state, command):
            state = evolve_run(state, event)
    return state


def test_a_run_for_the_past_or_too_long_is_refused() -> None:
    with pytest.raises(RuleViolation) as past:
        decide_run(
            AllocationRun(),
            RequestRun(run_id="R", from_day=date(2026, 2, 1), horizon_days=7, today=TODAY),
        )
    assert past.value.field == "from_day"
    with pytest.raises(RuleViolation) as long:
        decide_run(
            AllocationRun(), RequestRun(run_id="R", from_day=TODAY, horizon_days=90, today=TODAY)
        )
    assert long.value.field == "horizon_days"


def test_a_proposal_is_recorded_once() -> None:
    state = proposed()
    assert state.status == "proposed" and len(state.lines) == 3
    assert decide_run(state, RecordProposal(lines=(), balances=())) == []


def test_lines_are_approved_edited_or_rejected_and_others_follow_the_default() -> None:
    decision = DecideRun(
        decisions=(
            LineDecision(line=1, decision="edit", vials=6),
            LineDecision(line=2, decision="reject"),
        ),
        others="approve",
    )
    *approvals, decided = decide_run(proposed(), decision)
    assert isinstance(decided, AllocationRunDecided)
    assert (decided.approved, decided.edited, decided.rejected) == (2, 1, 1)
    shipments = [s for a in approvals if isinstance(a, AllocationApproved) for s in a.shipments]
    assert [(s.line, s.vials, s.shipment_id) for s in shipments] == [(1, 6, "R1-1"), (3, 4, "R1-3")]


@pytest.mark.parametrize(
    ("decision", "code", "field"),
    [
        (LineDecision(line=9, decision="approve"), "unknown_line", "decisions[0].line"),
        (LineDecision(line=1, decision="edit", vials=7), "invalid_vials", "decisions[0].vials"),
        (LineDecision(line=1, decision="edit"), "invalid_vials", "decisions[0].vials"),
        (
            LineDecision(line=1, decision="approve", vials=2),
            "vials_without_edit",
            "decisions[0].vials",
        ),
    ],
)
def test_a_bad_decision_is_refused_and_names_its_field(
    decision: LineDecision, code: str, field: str
) -> None:
    with pytest.raises(RuleViolation) as refused:
        decide_run(proposed(), DecideRun(decisions=(decision,)))
    assert (refused.value.code, refused.value.field) == (code, field)


def test_a_run_is_decided_once_and_only_once_proposed() -> None:
    state = proposed()
    for event in decide_run(state, DecideRun(decisions=())):
        state = evolve_run(state, event)
    with pytest.raises(Conflict) as twice:
        decide_run(state, DecideRun(decisions=()))
    assert twice.value.code == "run_already_decided"
    requested = evolve_run(
        AllocationRun(),
        decide_run(
            AllocationRun(), RequestRun(run_id="R", from_day=TODAY, horizon_days=1, today=TODAY)
        )[0],
    )
    with pytest.raises(Conflict) as early:
        decide_run(requested, DecideRun(decisions=()))
    assert early.value.code == "run_not_proposed"


def test_many_approved_lines_travel_in_several_events() -> None:
    events = decide_run(proposed(lines=1201), DecideRun(decisions=(), others="approve"))
    assert [len(e.shipments) for e in events if isinstance(e, AllocationApproved)] == [
        500,
        500,
        201,
    ]


def observe(doses: int, daily: float) -> ObserveSupply:
    return ObserveSupply(
        site_id="SITE-1",
        product_code="P",
        doses_on_hand=doses,
        daily_demand=daily,
        threshold_days=3,
    )


def test_an_alert_is_raised_below_the_threshold_once_and_cleared_above_it() -> None:
    state = Replenishment()
    assert decide_replenishment(state, observe(30, 10)) == []  # exactly 3 days
    (raised,) = decide_replenishment(state, observe(20, 10))
    assert isinstance(raised, ReplenishmentAlertRaised) and raised.days_of_supply == 2.0
    state = evolve_replenishment(state, raised)
    assert decide_replenishment(state, observe(5, 10)) == []
    (cleared,) = decide_replenishment(state, observe(5, 0))  # nothing booked any more
    assert isinstance(cleared, ReplenishmentAlertCleared)
    assert not evolve_replenishment(state, cleared).alert


def test_a_national_proposal_travels_in_events_kafka_takes() -> None:
    state = proposed(lines=1201)
    events = decide_run(
        evolve_run(
            AllocationRun(),
            decide_run(
                AllocationRun(),
                RequestRun(run_id="R2", from_day=TODAY, horizon_days=7, today=TODAY),
            )[0],
        ),
        RecordProposal(lines=state.lines, balances=state.balances),
    )
    assert [len(e.lines) for e in events if isinstance(e, AllocationProposed)] == [500, 500, 201]
    assert [e.balance is not None for e in events if isinstance(e, AllocationProposed)] == [
        True,
        False,
        False,
    ]
    assert max(len(CONTEXT.encode(e)) for e in events) < 512 * 1024
