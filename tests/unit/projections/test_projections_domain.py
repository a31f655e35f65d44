"""The projections' pure rules: folding events into rows, and a citizen's facts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dose_events import COMIRNATY, administered, voided
from immunreg.contracts.administration import DoseCorrected
from immunreg.contracts.booking import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentMissed,
    AppointmentRescheduled,
)
from immunreg.contracts.common import Sealed
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    Consent,
    RegistrationWithdrawn,
)
from immunreg.reference.calendar import age_on
from services.projections.domain import (
    MAX_PERIOD_DAYS,
    Registration,
    age_band_refusal,
    appointment_cells,
    band_of,
    citizen_facts,
    district_of,
    dose_cells,
    evolve_appointment,
    evolve_dose,
    evolve_registration,
    local_day,
    location_district,
    pending_municipality,
    period_refusal,
    run_out_day,
)

VAXZEVRIA = "EU/1/21/1529"


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00")


def registered(
    citizen: str = "c1", born: date = date(1960, 5, 10), municipality: str = "80284"
) -> CitizenRegistered:
    return CitizenRegistered(
        citizen_id=citizen,
        birth_date=born,
        sex="male",
        municipality_code=municipality,
        priority_group="general",
        consent=Consent(data_processing=True),
        personal=Sealed(key_id="k", nonce="n", ciphertext="c"),
    )


def fold(events: list[object]) -> object:
    dose = None
    for event in events:
        dose = evolve_dose(dose, event)  # type: ignore[arg-type]
    return dose


def test_a_day_is_the_calendar_day_in_belgrade() -> None:
    assert local_day(datetime(2024, 3, 1, 23, 30, tzinfo=UTC)) == date(2024, 3, 2)
    assert local_day(datetime(2024, 7, 1, 21, 59, tzinfo=UTC)) == date(2024, 7, 1)


@pytest.mark.parametrize(
    ("age", "band"), [(0, "0-4"), (4, "0-4"), (5, "5-9"), (64, "60-64"), (85, "85+"), (103, "85+")]
)
def test_ages_fall_in_census_bands(age: int, band: str) -> None:
    assert band_of(age) == band


def test_no_age_has_no_band() -> None:
    assert band_of(None) is None
    assert band_of(-1) is None


def test_age_on_a_day_counts_whole_years() -> None:
    assert age_on(date(1960, 5, 10), date(2024, 5, 9)) == 63
    assert age_on(date(1960, 5, 10), date(2024, 5, 10)) == 64


def test_districts_come_from_the_census_and_unknown_codes_have_none() -> None:
    assert district_of("70092") == "RS-00"
    assert district_of("80284") == "RS-06"
    assert district_of("99999") is None
    assert district_of(None) is None


def test_a_correction_replaces_the_record_and_keeps_what_it_leaves_empty() -> None:
    corrected = DoseCorrected(
        dose_id="d1",
        citizen_id="c1",
        site_id="SITE-2",
        product_code=VAXZEVRIA,
        lot_number="LOT2",
        dose_number=1,
        series_length=2,
        series_complete=False,
        administered_at=at("2024-03-03"),
        reason="wrong product",
    )
    dose = evolve_dose(evolve_dose(None, administered()), corrected)
    assert dose is not None
    assert (dose.site_id, dose.product_code, dose.day) == ("SITE-2", VAXZEVRIA, date(2024, 3, 3))
    assert (dose.age_at_vaccination, dose.sex, dose.citizen_municipality_code) == (
        50,
        "female",
        "70092",
    )


def test_a_voided_dose_stays_voided_and_counts_nowhere() -> None:
    void = voided()
    dose = evolve_dose(evolve_dose(None, administered()), void)
    assert dose is not None and dose.voided
    assert dose_cells(dose) == ([], [])
    stub = evolve_dose(None, void)
    assert stub is not None and stub.voided and stub.day is None


def test_a_dose_counts_in_its_day_product_band_kind_and_site() -> None:
    assert dose_cells(evolve_dose(None, administered(dose_number=2, series_complete=True))) == (
        [(date(2024, 3, 1), COMIRNATY, "50-54", "series")],
        [("SITE-1", COMIRNATY, date(2024, 3, 1))],
    )
    booster = evolve_dose(None, administered(dose_number=3, booster=True, age_at_vaccination=70))
    assert dose_cells(booster)[0] == [(date(2024, 3, 1), COMIRNATY, "70-74", "booster")]


def test_registration_wins_over_the_dose_for_residence_sex_and_age() -> None:
    registration = evolve_registration(Registration(), registered())
    dose = evolve_dose(None, administered(administered_at=at("2024-05-09"), age_at_vaccination=99))
    assert dose is not None
    facts = citizen_facts(registration, [dose], pending=False)
    assert (facts.municipality_code, facts.district_code, facts.sex, facts.age_band) == (
        "80284",
        "RS-06",
        "male",
        "60-64",  # 63 on the day of the first dose (from the birth date, not the dose's 99)
    )


def test_without_a_registration_the_first_dose_says_who_it_was() -> None:
    doses = [
        evolve_dose(
            None,
            administered(
                dose_id="d2", administered_at=at("2024-04-01"), dose_number=2, age_at_vaccination=48
            ),
        ),
        evolve_dose(
            None,
            administered(dose_id="d1", administered_at=at("2024-03-01"), age_at_vaccination=47),
        ),
    ]
    facts = citizen_facts(Registration(), [d for d in doses if d], pending=False)
    assert (facts.municipality_code, facts.sex, facts.age_band) == ("70092", "female", "45-49")
    assert (facts.dose1_date, facts.complete_date, facts.booster_date) == (
        date(2024, 3, 1),
        None,
        None,
    )
    assert not facts.waiting


def test_series_and_booster_dates_come_from_the_earliest_such_dose() -> None:
    doses = [
        evolve_dose(None, administered(dose_id="d1", administered_at=at("2024-03-01"))),
        evolve_dose(
            None,
            administered(
                dose_id="d2", administered_at=at("2024-03-22"), dose_number=2, series_complete=True
            ),
        ),
        evolve_dose(
            None,
            administered(
                dose_id="d3",
                administered_at=at("2024-06-25"),
                dose_number=3,
                booster=True,
                product_code="X",
            ),
        ),
    ]
    facts = citizen_facts(Registration(), [d for d in doses if d], pending=False)
    assert (facts.dose1_date, facts.dose1_product) == (date(2024, 3, 1), COMIRNATY)
    assert facts.complete_date == date(2024, 3, 22)
    assert (facts.booster_date, facts.booster_product) == (date(2024, 6, 25), "X")


def test_a_booster_alone_implies_a_completed_series() -> None:
    booster = evolve_dose(None, administered(dose_number=3, booster=True))
    assert booster is not None
    facts = citizen_facts(Registration(), [booster], pending=False)
    assert facts.complete_date == facts.booster_date == date(2024, 3, 1)


def test_voided_doses_do_not_make_anyone_vaccinated() -> None:
    dose = evolve_dose(None, administered())
    assert dose is not None
    void = evolve_dose(dose, voided(reason="error"))
    registration = evolve_registration(Registration(), registered())
    facts = citizen_facts(registration, [void] if void else [], pending=False)
    assert facts.dose1_date is None and facts.age_band is None
    assert facts.waiting and facts.waiting_in == "80284"


@pytest.mark.parametrize(
    ("events", "pending", "waiting"),
    [
        ([], False, True),
        ([], True, False),
        ([RegistrationWithdrawn(citizen_id="c1")], False, False),
        ([CitizenErased(citizen_id="c1")], False, False),
    ],
)
def test_waiting_means_registered_unvaccinated_and_unbooked(
    events: list[object], pending: bool, waiting: bool
) -> None:
    registration = evolve_registration(Registration(), registered())
    for event in events:
        registration = evolve_registration(registration, event)  # type: ignore[arg-type]
    assert citizen_facts(registration, [], pending=pending).waiting is waiting


def test_erasure_drops_the_birth_date_and_the_age_falls_back_to_the_dose() -> None:
    registration = evolve_registration(
        evolve_registration(Registration(), registered()), CitizenErased(citizen_id="c1")
    )
    assert registration.birth_date is None and registration.erased
    dose = evolve_dose(None, administered(age_at_vaccination=47))
    assert dose is not None
    assert citizen_facts(registration, [dose], pending=False).age_band == "45-49"


def test_an_appointment_follows_its_lifecycle() -> None:
    booked = AppointmentBooked(
        appointment_id="a1",
        citizen_id="c1",
        site_id="SITE-1",
        municipality_code="70092",
        day=date(2024, 3, 1),
        product_code=COMIRNATY,
        dose_number=1,
        reason="nearest",
    )
    appointment = evolve_appointment(None, booked)
    assert pending_municipality(appointment) == "70092"
    assert appointment_cells(appointment) == {}
    moved = evolve_appointment(
        appointment,
        AppointmentRescheduled(
            appointment_id="a1",
            citizen_id="c1",
            from_site_id="SITE-1",
            from_day=date(2024, 3, 1),
            site_id="SITE-2",
            day=date(2024, 3, 5),
            product_code=COMIRNATY,
        ),
    )
    assert moved is not None and (moved.site_id, moved.day, moved.municipality_code) == (
        "SITE-2",
        date(2024, 3, 5),
        "70092",
    )
    attended = evolve_appointment(
        moved,
        AppointmentAttended(
            appointment_id="a1",
            citizen_id="c1",
            site_id="SITE-2",
            day=date(2024, 3, 5),
            dose_id="d",
        ),
    )
    assert pending_municipality(attended) is None
    assert appointment_cells(attended) == {("SITE-2", date(2024, 3, 5), COMIRNATY): (0, 1, 0)}
    missed = evolve_appointment(
        moved,
        AppointmentMissed(
            appointment_id="a1",
            citizen_id="c1",
            site_id="SITE-2",
            day=date(2024, 3, 5),
            product_code=COMIRNATY,
        ),
    )
    assert appointment_cells(missed) == {("SITE-2", date(2024, 3, 5), COMIRNATY): (0, 0, 1)}
    cancelled = evolve_appointment(
        moved,
        AppointmentCancelled(
            appointment_id="a1",
            citizen_id="c1",
            site_id="SITE-2",
            day=date(2024, 3, 5),
            product_code=COMIRNATY,
            reason="citizen",
        ),
    )
    assert cancelled is not None and cancelled.status == "cancelled"
    assert pending_municipality(cancelled) is None and appointment_cells(cancelled) == {}


@pytest.mark.parametrize(
    ("label", "refused"),
    [(None, False), ("0-4", False), ("85+", False), ("0-5", True), ("", True)],
)
def test_only_census_age_bands_filter_a_report(label: str | None, refused: bool) -> None:
    reason = age_band_refusal(label)
    assert (reason is not None) == refused
    if reason is not None:
        assert "0-4" in reason  # the refusal lists the bands a client may use


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        (date(2026, 1, 1), date(2026, 1, 1), None),
        (date(2026, 1, 2), date(2026, 1, 1), "must not be after `to`"),
        (date(2021, 1, 1), date(2021, 1, 1) + timedelta(days=MAX_PERIOD_DAYS), None),
        (
            date(2021, 1, 1),
            date(2021, 1, 2) + timedelta(days=MAX_PERIOD_DAYS),
            "at most five years at a time",
        ),
    ],
)
def test_a_report_period_runs_forward_and_at_most_five_years(
    start: date, end: date, reason: str | None
) -> None:
    assert period_refusal(start, end) == reason


@pytest.mark.parametrize(
    ("doses", "booked", "runs_out"),
    [
        (10, [(date(2026, 3, 2), 8), (date(2026, 3, 4), 8)], date(2026, 3, 4)),
        (16, [(date(2026, 3, 4), 8), (date(2026, 3, 2), 8)], None),
        (0, [(date(2026, 3, 2), 1)], date(2026, 3, 2)),
        (5, [], None),
    ],
)
def test_a_site_runs_out_the_first_day_its_bookings_outrun_its_doses(
    doses: int, booked: list[tuple[date, int]], runs_out: date | None
) -> None:
    assert run_out_day(doses, booked) == runs_out


@pytest.mark.parametrize(
    ("location", "municipality", "district"),
    [
        ("SITE-1", "70092", "RS-00"),
        ("WH-RS-14", None, "RS-14"),
        ("WH-NATIONAL", None, None),
        ("WH-RS-99", None, None),
        ("SITE-2", None, None),
    ],
)
def test_the_district_of_a_stock_location(
    location: str, municipality: str | None, district: str | None
) -> None:
    assert location_district(location, municipality) == district
