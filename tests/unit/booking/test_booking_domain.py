"""SiteDay refuses overbooking; an Appointment's lifecycle, one event per decision; streams
written when a NotificationRequested went beside each still replay."""

from __future__ import annotations

from datetime import date

import pytest

from immunreg.contracts.booking import (
    CONTEXT,
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentMissed,
    AppointmentRescheduled,
    NotificationRequested,
    SiteCapacityChanged,
    SlotsReleased,
    SlotsReserved,
)
from immunreg.domain import Conflict, NotFound, RuleViolation
from services.booking.domain import (
    AppointmentState,
    Attend,
    Book,
    Cancel,
    ChangeCapacity,
    Miss,
    Release,
    Reschedule,
    Reserve,
    SiteDayState,
    decide_appointment,
    decide_siteday,
    evolve_appointment,
    evolve_siteday,
)

DAY = date(2021, 3, 2)
P = "EU/1/20/1528"
DEFAULT = {P: 3}


def reserve(n: int, default: dict[str, int] = DEFAULT) -> Reserve:
    return Reserve(
        site_id="S1",
        day=DAY,
        product_code=P,
        appointment_ids=[f"a{i}" for i in range(n)],
        default_capacity=default,
    )


def apply(state: SiteDayState, *commands: object) -> SiteDayState:
    for command in commands:
        for event in decide_siteday(state, command):  # type: ignore[arg-type]
            state = evolve_siteday(state, event)
    return state


CAPACITY_CASES = [
    ("default capacity", SiteDayState(), 3),
    ("some booked", SiteDayState(booked={P: 2}), 1),
    ("override replaces the default", SiteDayState(override={P: 5}), 5),
    ("override without the product", SiteDayState(override={"BBIBP-CorV": 5}), 0),
    ("closed", SiteDayState(closed=True, override={P: 5}), 0),
    ("capacity lowered below bookings", SiteDayState(override={P: 1}, booked={P: 2}), 0),
]


@pytest.mark.parametrize(
    ("state", "free"), [c[1:] for c in CAPACITY_CASES], ids=[c[0] for c in CAPACITY_CASES]
)
def test_free_slots(state: SiteDayState, free: int) -> None:
    assert state.free(P, DEFAULT) == free


def test_reserving_more_than_is_free_is_refused() -> None:
    state = apply(SiteDayState(), reserve(2))
    assert state.booked == {P: 2}
    with pytest.raises(Conflict) as refused:
        decide_siteday(state, reserve(2))
    assert refused.value.code == "slot_full"
    assert decide_siteday(state, reserve(1))[0] == SlotsReserved(
        site_id="S1", day=DAY, product_code=P, appointment_ids=["a0"]
    )


def test_a_released_slot_is_free_again() -> None:
    state = apply(SiteDayState(), reserve(3))
    state = apply(
        state, Release(site_id="S1", day=DAY, product_code=P, appointment_ids=["a1"], reason="x")
    )
    assert state.free(P, DEFAULT) == 1
    assert isinstance(
        decide_siteday(
            state,
            Release(site_id="S1", day=DAY, product_code=P, appointment_ids=["a2"], reason="y"),
        )[0],
        SlotsReleased,
    )


def test_capacity_change_records_only_a_change() -> None:
    change = ChangeCapacity(site_id="S1", day=DAY, capacity={P: 9})
    events = decide_siteday(SiteDayState(), change)
    assert events == [SiteCapacityChanged(site_id="S1", day=DAY, capacity={P: 9}, closed=False)]
    assert decide_siteday(apply(SiteDayState(), change), change) == []


BOOK = Book(
    appointment_id="ap1",
    citizen_id="cit1",
    site_id="S1",
    municipality_code="70092",
    day=DAY,
    product_code=P,
    dose_number=1,
    reason="because",
    run_id="run1",
)


def booked() -> AppointmentState:
    state = AppointmentState()
    for event in decide_appointment(state, BOOK):
        state = evolve_appointment(state, event)
    return state


def test_booking_records_the_reason_and_nothing_beside_it() -> None:
    # One event: the notifications service sends the booking notice from it.
    (booked_event,) = decide_appointment(AppointmentState(), BOOK)
    assert isinstance(booked_event, AppointmentBooked)
    assert (booked_event.reason, booked_event.run_id) == ("because", "run1")


def test_a_stream_written_with_notification_requests_still_replays() -> None:
    """Appointment streams from before hold a NotificationRequested after each decision:
    they decode (the type is still in booking's contract) and evolve as if it were not
    there."""
    (booked_event,) = decide_appointment(AppointmentState(), BOOK)
    move = Reschedule(site_id="S2", municipality_code="70122", day=date(2021, 3, 4))
    (moved,) = decide_appointment(evolve_appointment(AppointmentState(), booked_event), move)
    old = [
        booked_event,
        NotificationRequested(
            citizen_id="cit1",
            template="appointment_booked",
            parameters={"appointment_id": "ap1", "site_id": "S1", "day": DAY.isoformat()},
        ),
        moved,
        NotificationRequested(citizen_id="cit1", template="appointment_rescheduled"),
    ]
    recorded = [
        CONTEXT.envelope(e, stream_id="appointment-ap1", stream_type="Appointment", version=n)
        for n, e in enumerate(old, 1)
    ]
    state = AppointmentState()
    for envelope in recorded:
        state = evolve_appointment(state, CONTEXT.read(envelope))
    assert (state.status, state.site_id, state.day, state.municipality_code) == (
        "booked",
        "S2",
        date(2021, 3, 4),
        "70122",
    )
    # And the replayed appointment decides as any other: one event, no request beside it.
    assert [type(e) for e in decide_appointment(state, Cancel(reason="r"))] == [
        AppointmentCancelled
    ]


def test_booking_twice_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        decide_appointment(booked(), BOOK)


# (case, state transitions before, command, expected event types or error)
LIFECYCLE = [
    ("cancel", [], Cancel(reason="r"), [AppointmentCancelled]),
    ("cancel twice", [Cancel(reason="r")], Cancel(reason="r"), []),
    ("attend", [], Attend(dose_id="d1"), [AppointmentAttended]),
    ("attend after a no-show", [Miss()], Attend(dose_id="d1"), [AppointmentAttended]),
    ("attend twice", [Attend(dose_id="d1")], Attend(dose_id="d1"), []),
    ("miss", [], Miss(), [AppointmentMissed]),
    ("miss after attending", [Attend(dose_id="d1")], Miss(), Conflict),
    ("cancel after attending", [Attend(dose_id="d1")], Cancel(reason="r"), Conflict),
    ("attend a cancelled one", [Cancel(reason="r")], Attend(dose_id="d1"), Conflict),
    (
        "reschedule",
        [],
        Reschedule(site_id="S2", municipality_code="70122", day=DAY),
        [AppointmentRescheduled],
    ),
    (
        "reschedule to the same slot",
        [],
        Reschedule(site_id="S1", municipality_code="70092", day=DAY),
        RuleViolation,
    ),
    (
        "reschedule a cancelled one",
        [Cancel(reason="r")],
        Reschedule(site_id="S2", municipality_code="", day=DAY),
        Conflict,
    ),
]


@pytest.mark.parametrize(
    ("before", "command", "expected"), [c[1:] for c in LIFECYCLE], ids=[c[0] for c in LIFECYCLE]
)
def test_appointment_lifecycle(before: list[object], command: object, expected: object) -> None:
    state = booked()
    for previous in before:
        for event in decide_appointment(state, previous):  # type: ignore[arg-type]
            state = evolve_appointment(state, event)
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected):
            decide_appointment(state, command)  # type: ignore[arg-type]
    else:
        assert [type(e) for e in decide_appointment(state, command)] == expected  # type: ignore[arg-type]


def test_an_unknown_appointment_is_not_found() -> None:
    with pytest.raises(NotFound):
        decide_appointment(AppointmentState(), Cancel(reason="r"))


def test_rescheduling_moves_the_appointment() -> None:
    state = booked()
    moved = decide_appointment(
        state, Reschedule(site_id="S2", municipality_code="70122", day=date(2021, 3, 5))
    )
    state = evolve_appointment(state, moved[0])
    assert (state.site_id, state.day, state.municipality_code, state.status) == (
        "S2",
        date(2021, 3, 5),
        "70122",
        "booked",
    )
