"""A known history: two sites, seven citizens, their appointments, doses (one voided, one
corrected), stock, waste, adverse events and a certificate. The tests know its answers."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from immunreg.contracts.administration import (
    AdverseEventReported,
    DoseAdministered,
    DoseCorrected,
    DoseVoided,
)
from immunreg.contracts.booking import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentMissed,
    NotificationRequested,
    SiteCapacityChanged,
    SiteDefined,
    SlotsReleased,
    SlotsReserved,
)
from immunreg.contracts.certificates import CertificateIssued
from immunreg.contracts.common import Sealed, Sex
from immunreg.contracts.inventory import DosesWasted, OpenedVialExpired, StockLevelChanged
from immunreg.contracts.registration import (
    CitizenRegistered,
    Consent,
    RegistrationWithdrawn,
)
from services.projections.handlers import Sources

from .conftest import History

COMIRNATY, VAXZEVRIA, SINOPHARM = "EU/1/20/1528", "EU/1/21/1529", "BBIBP-CorV"
BARAJEVO, NOVI_SAD = "70092", "80284"  # Grad Beograd (RS-00), Južnobački okrug (RS-06)


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=UTC)


class Ids:
    """Fresh ids for one run (other runs' events may share the broker, never the topics)."""

    def __init__(self) -> None:
        run = uuid.uuid4().hex[:6].upper()
        self.site_a, self.site_b = f"SITE-A{run}", f"SITE-B{run}"
        self.citizens = {name: f"cit-{name}-{run}" for name in "ABCDEFG"}

    def __getitem__(self, name: str) -> str:
        return self.citizens[name]


def scripted(sources: Sources) -> tuple[History, Ids]:
    """The history, in the order it happened."""
    h = History(sources, start=datetime(2024, 7, 1, 8, 0, tzinfo=UTC))
    ids = Ids()
    reg, book, inv, adm, cert = (
        sources.registration,
        sources.booking,
        sources.inventory,
        sources.administration,
        sources.certificates,
    )
    site_a, site_b = ids.site_a, ids.site_b

    h.add(
        book,
        SiteDefined(
            site_id=site_a,
            name="Dom zdravlja Barajevo",
            municipality_code=BARAJEVO,
            address="Svetosavska 1",
            daily_capacity={COMIRNATY: 10},
        ),
        f"site-{site_a}",
    )
    h.add(
        book,
        SiteDefined(
            site_id=site_b,
            name="Sajam Novi Sad",
            municipality_code=NOVI_SAD,
            address="Hajduk Veljkova 11",
            daily_capacity={VAXZEVRIA: 5},
        ),
        f"site-{site_b}",
    )
    h.add(
        book,
        SiteCapacityChanged(site_id=site_a, day=date(2024, 3, 2), capacity={COMIRNATY: 4}),
        f"siteday-{site_a}-2024-03-02",
    )
    h.add(
        book,
        SiteCapacityChanged(site_id=site_b, day=date(2024, 3, 3), closed=True),
        f"siteday-{site_b}-2024-03-03",
    )

    def register(name: str, born: date, sex: Sex, municipality: str) -> None:
        h.add(
            reg,
            CitizenRegistered(
                citizen_id=ids[name],
                birth_date=born,
                sex=sex,
                municipality_code=municipality,
                priority_group="general",
                consent=Consent(data_processing=True),
                personal=Sealed(key_id="k", nonce="bm9uY2U=", ciphertext="c2VhbGVk"),
            ),
            f"citizen-{ids[name]}",
        )

    register("A", date(1960, 5, 10), "female", BARAJEVO)  # 63 at dose 1: 60-64
    register("B", date(1990, 1, 1), "male", BARAJEVO)  # 34: 30-34
    register("C", date(2000, 6, 15), "female", NOVI_SAD)  # 23: 20-24
    register("D", date(1950, 1, 1), "male", NOVI_SAD)  # waits: no dose, no appointment
    register("E", date(1985, 2, 2), "female", NOVI_SAD)  # booked, not yet seen
    register("F", date(1970, 3, 3), "male", NOVI_SAD)  # withdraws
    h.add(
        reg,
        RegistrationWithdrawn(citizen_id=ids["F"], reason="moved abroad"),
        f"citizen-{ids['F']}",
    )
    # G never registered: known only from their doses.

    def appointment(key: str, name: str, site: str, day: date, product: str) -> str:
        appointment_id = f"appt-{key}-{ids[name]}"
        h.add(
            book,
            AppointmentBooked(
                appointment_id=appointment_id,
                citizen_id=ids[name],
                site_id=site,
                municipality_code=BARAJEVO if site == site_a else NOVI_SAD,
                day=day,
                product_code=product,
                dose_number=1,
                reason="nearest site",
            ),
            f"appointment-{appointment_id}",
        )
        h.add(
            book,
            SlotsReserved(
                site_id=site, day=day, product_code=product, appointment_ids=[appointment_id]
            ),
            f"siteday-{site}-{day.isoformat()}",
        )
        # Booking no longer writes this, but streams from before hold one beside each
        # booking: a rebuild passes over it.
        h.add(
            book,
            NotificationRequested(citizen_id=ids[name], template="booked"),
            f"appointment-{appointment_id}",
        )
        return appointment_id

    a1 = appointment("1", "A", site_a, date(2024, 3, 1), COMIRNATY)
    b1 = appointment("1", "B", site_a, date(2024, 3, 1), COMIRNATY)
    c1 = appointment("1", "C", site_b, date(2024, 3, 1), VAXZEVRIA)
    appointment("1", "E", site_b, date(2024, 3, 4), VAXZEVRIA)
    a2 = appointment("2", "A", site_a, date(2024, 3, 2), COMIRNATY)
    h.add(
        book,
        AppointmentCancelled(
            appointment_id=a2,
            citizen_id=ids["A"],
            site_id=site_a,
            day=date(2024, 3, 2),
            product_code=COMIRNATY,
            reason="citizen",
        ),
        f"appointment-{a2}",
    )
    h.add(
        book,
        SlotsReleased(
            site_id=site_a,
            day=date(2024, 3, 2),
            product_code=COMIRNATY,
            appointment_ids=[a2],
            reason="cancelled",
        ),
        f"siteday-{site_a}-2024-03-02",
    )

    def dose(
        dose_id: str,
        name: str,
        site: str,
        product: str,
        *,
        when: datetime,
        number: int,
        complete: bool = False,
        booster: bool = False,
        age: int = 40,
        sex: Sex = "female",
        municipality: str = NOVI_SAD,
    ) -> str:
        h.add(
            adm,
            DoseAdministered(
                dose_id=dose_id,
                citizen_id=ids[name],
                site_id=site,
                site_municipality_code=BARAJEVO if site == site_a else NOVI_SAD,
                citizen_municipality_code=municipality,
                product_code=product,
                lot_number="LOT-1",
                dose_number=number,
                series_length=2,
                series_complete=complete,
                booster=booster,
                administered_at=when,
                age_at_vaccination=age,
                sex=sex,
                vaccinator_id="vac-1",
            ),
            f"dose-{dose_id}",
        )
        return dose_id

    run = ids.site_a[-6:]
    da1 = dose(f"dA1{run}", "A", site_a, COMIRNATY, when=at("2024-03-01"), number=1, age=63)
    h.add(
        book,
        AppointmentAttended(
            appointment_id=a1,
            citizen_id=ids["A"],
            site_id=site_a,
            day=date(2024, 3, 1),
            dose_id=da1,
        ),
        f"appointment-{a1}",
    )
    db1 = dose(
        f"dB1{run}", "B", site_a, COMIRNATY, when=at("2024-03-01", 11), number=1, age=34, sex="male"
    )
    h.add(
        book,
        AppointmentAttended(
            appointment_id=b1,
            citizen_id=ids["B"],
            site_id=site_a,
            day=date(2024, 3, 1),
            dose_id=db1,
        ),
        f"appointment-{b1}",
    )
    duplicate = dose(
        f"dB9{run}", "B", site_a, COMIRNATY, when=at("2024-03-01", 12), number=1, age=34
    )
    h.add(
        adm,
        DoseVoided(
            dose_id=duplicate,
            citizen_id=ids["B"],
            site_id=site_a,
            product_code=COMIRNATY,
            lot_number="LOT-1",
            dose_number=1,
            reason="entered twice",
        ),
        f"dose-{duplicate}",
    )
    h.add(
        book,
        AppointmentMissed(
            appointment_id=c1,
            citizen_id=ids["C"],
            site_id=site_b,
            day=date(2024, 3, 1),
            product_code=VAXZEVRIA,
        ),
        f"appointment-{c1}",
    )
    dc1 = dose(f"dC1{run}", "C", site_b, VAXZEVRIA, when=at("2024-03-02"), number=1, age=23)
    # Recorded on the 2nd, given on the 3rd: the correction moves it.
    h.add(
        adm,
        DoseCorrected(
            dose_id=dc1,
            citizen_id=ids["C"],
            site_id=site_b,
            product_code=VAXZEVRIA,
            lot_number="LOT-1",
            dose_number=1,
            series_length=2,
            series_complete=False,
            administered_at=at("2024-03-03"),
            reason="wrong date",
        ),
        f"dose-{dc1}",
    )
    dose(f"dG1{run}", "G", site_b, SINOPHARM, when=at("2024-03-03"), number=1, age=45, sex="male")
    dose(
        f"dA2{run}", "A", site_a, COMIRNATY, when=at("2024-03-22"), number=2, complete=True, age=63
    )
    dose(
        f"dG2{run}",
        "G",
        site_b,
        SINOPHARM,
        when=at("2024-03-24"),
        number=2,
        complete=True,
        age=45,
        sex="male",
    )
    dose(f"dA3{run}", "A", site_a, COMIRNATY, when=at("2024-06-25"), number=3, booster=True, age=64)

    for location, product, levels in (
        (site_a, COMIRNATY, (60, 42)),
        (site_b, VAXZEVRIA, (30,)),
        ("WH-NATIONAL", COMIRNATY, (1000,)),
    ):
        for available in levels:
            h.add(
                inv,
                StockLevelChanged(
                    location_id=location,
                    product_code=product,
                    doses_available=available,
                    earliest_expiry=date(2024, 9, 30),
                ),
                f"level-{location}:{product}",
            )
    h.add(
        inv,
        DosesWasted(
            site_id=site_a,
            lot_number="LOT-1",
            product_code=COMIRNATY,
            doses=2,
            reason="broken_vial",
        ),
        f"stock-{site_a}:LOT-1",
        occurred=at("2024-03-01", 15),
    )
    h.add(
        inv,
        OpenedVialExpired(site_id=site_b, lot_number="LOT-1", product_code=VAXZEVRIA, doses_lost=3),
        f"stock-{site_b}:LOT-1",
        occurred=at("2024-03-02", 18),
    )
    h.add(
        adm,
        AdverseEventReported(
            report_id=f"aefi-1-{run}",
            dose_id=da1,
            citizen_id=ids["A"],
            product_code=COMIRNATY,
            lot_number="LOT-1",
            symptoms=["fever"],
            onset_at=at("2024-03-02"),
            serious=False,
            outcome="recovered",
        ),
        f"aefi-1-{run}",
    )
    h.add(
        adm,
        AdverseEventReported(
            report_id=f"aefi-2-{run}",
            dose_id=dc1,
            citizen_id=ids["C"],
            product_code=VAXZEVRIA,
            lot_number="LOT-1",
            symptoms=["anaphylaxis"],
            onset_at=at("2024-03-03"),
            serious=True,
            outcome="hospitalised",
        ),
        f"aefi-2-{run}",
    )
    h.add(
        cert,
        CertificateIssued(
            uvci=f"URN:UVCI:01:RS:{run}A",
            citizen_id=ids["A"],
            dose_id=f"dA2{run}",
            dose_number=2,
            total_doses=2,
            product_code=COMIRNATY,
            issued_at=at("2024-03-22", 12),
            expires_at=at("2025-03-22"),
            key_id="k1",
        ),
        f"certificate-{run}A",
    )
    return h, ids
