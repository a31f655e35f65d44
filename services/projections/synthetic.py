"""A synthetic national history: valid envelopes of every context, for the benchmark
(`bench/projections.py`) and the dashboard's browser test. Deterministic for a seed.

Citizens register (residence drawn by census population, with an uptake that
varies by district), are booked a few days later at a site of their municipality's
district, attend (or miss) and get dose 1, dose 2 three to four weeks later and a
booster after three months or more, while the horizon lasts. Sites report stock
levels every ten doses; vials are wasted now and then; about 1 in 1,000 doses has an
adverse event reported (1 in 10 of those serious); a completed series gets a
certificate; a few doses are entered twice and voided, a few corrected.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import msgspec

from immunreg.contracts.administration import (
    AdverseEventReported,
    DoseAdministered,
    DoseCorrected,
    DoseVoided,
)
from immunreg.contracts.booking import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentMissed,
    SiteDefined,
    SlotsReserved,
)
from immunreg.contracts.certificates import CertificateIssued
from immunreg.contracts.common import Sealed, Sex
from immunreg.contracts.envelope import Context, Envelope, Event
from immunreg.contracts.inventory import DoseConsumed, DosesWasted, StockLevelChanged
from immunreg.contracts.registration import CitizenRegistered, Consent
from immunreg.reference.geography import age_bands, municipalities

from .handlers import Sources

PRODUCTS = ("EU/1/20/1528", "EU/1/20/1507", "EU/1/21/1529", "BBIBP-CorV", "Sputnik-V")
PRODUCT_WEIGHTS = (45, 6, 9, 30, 10)
# How keen each district is, relative to the national mean (north keener than south).
UPTAKE = {
    "RS-00": 1.35, "RS-01": 1.15, "RS-02": 1.05, "RS-03": 1.0, "RS-04": 1.0, "RS-05": 1.05,
    "RS-06": 1.25, "RS-07": 1.0, "RS-08": 0.85, "RS-09": 0.95, "RS-10": 0.9, "RS-11": 0.8,
    "RS-12": 1.05, "RS-13": 0.8, "RS-14": 0.9, "RS-15": 0.85, "RS-16": 0.95, "RS-17": 0.9,
    "RS-18": 0.55, "RS-19": 0.75, "RS-20": 1.1, "RS-21": 0.65, "RS-22": 0.8, "RS-23": 0.6,
    "RS-24": 0.5,
}  # fmt: skip
SEALED = Sealed(key_id="synthetic", nonce="AAAAAAAAAAAAAAAA", ciphertext="c3ludGhldGlj")


@dataclass
class Expected:
    """What the generated history amounts to (for tests to check the dashboard against)."""

    citizens: int = 0
    dose1_people: int = 0
    doses: int = 0
    events: int = 0


@dataclass(frozen=True)
class Visit:
    """One dose given: who, where, what, when."""

    citizen_id: str
    dose_number: int
    booster: bool
    site_id: str
    site_municipality: str
    municipality: str
    product: str
    when: datetime
    age: int
    sex: Sex
    appointment_id: str


@dataclass
class Synthetic:
    """Generates the history; `envelopes()` yields (context, envelope) in time order per citizen."""

    sources: Sources
    end: date
    days: int = 150
    sites: int = 60
    seed: int = 2022
    citizens_hint: int | None = None  # scale site capacity to a small sample
    expected: Expected = field(default_factory=Expected)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.start = self.end - timedelta(days=self.days - 1)
        munis = list(municipalities().values())
        self._muni_codes = [m.code for m in munis]
        self._muni_weights = [m.population * UPTAKE.get(m.district_code, 1.0) for m in munis]
        self._district_of = {m.code: m.district_code for m in munis}
        bands = [b for b in age_bands() if b.low >= 15]
        self._bands = [(b.low, b.high if b.high is not None else 95) for b in bands]
        self._band_weights = [b.population * (1.5 if b.low >= 60 else 1.0) for b in bands]
        self._versions: dict[str, int] = {}
        self._site_list: list[tuple[str, str, str]] = []  # site id, municipality, product
        self._sites_by_district: dict[str, list[tuple[str, str, str]]] = {}
        self._doses_at: dict[tuple[str, str], int] = {}
        self._clock = datetime.combine(self.start, time(6), UTC)

    # --- envelopes ---------------------------------------------------------------------

    def _wrap(
        self, context: Context, event: Event, stream: str, when: datetime
    ) -> tuple[Context, Envelope]:
        version = self._versions.get(stream, 0) + 1
        self._versions[stream] = version
        self.expected.events += 1
        return context, context.envelope(
            event,
            stream_id=stream,
            stream_type=stream.split("-", maxsplit=1)[0],
            version=version,
            recorded_at=when,
        )

    def _moment(self, day: date) -> datetime:
        minutes = self.rng.randint(7 * 60, 19 * 60)
        return datetime.combine(day, time(0), UTC) + timedelta(minutes=minutes - 60)

    # --- the history -------------------------------------------------------------------

    def define_sites(self) -> Iterator[tuple[Context, Envelope]]:
        """SiteDefined for every site (municipalities drawn by population)."""
        booking = self.sources.booking
        chosen = self.rng.choices(self._muni_codes, self._muni_weights, k=self.sites)
        # Every district gets at least one site.
        for district in sorted(set(self._district_of.values())):
            if not any(self._district_of[c] == district for c in chosen):
                chosen.append(next(c for c in self._muni_codes if self._district_of[c] == district))
        for n, municipality in enumerate(chosen):
            site_id = f"SITE-{n + 1:04d}"
            product = self.rng.choices(PRODUCTS, PRODUCT_WEIGHTS)[0]
            site = (site_id, municipality, product)
            self._site_list.append(site)
            self._sites_by_district.setdefault(self._district_of[municipality], []).append(site)
            yield self._wrap(
                booking,
                SiteDefined(
                    site_id=site_id,
                    name=f"Vaccination point {n + 1}",
                    municipality_code=municipality,
                    address=f"Street {n + 1}",
                    daily_capacity={product: self._capacity()},
                ),
                f"site-{site_id}",
                datetime.combine(self.start, time(5), UTC),
            )

    def _capacity(self) -> int:
        """Doses a day: as national sites (80-300), or scaled to `citizens_hint` if given."""
        if self.citizens_hint is None:
            return self.rng.choice((80, 120, 200, 300))
        per_site_day = 2.2 * self.citizens_hint / (self.days * self.sites)
        return max(2, round(per_site_day * self.rng.uniform(2.0, 3.5)))

    def _ramp_day(self) -> date:
        # Registrations rise, peak a third of the way in, then tail off.
        offset = int(self.rng.triangular(0, self.days * 0.9, self.days * 0.3))
        return self.start + timedelta(days=offset)

    def citizen(self, n: int) -> Iterator[tuple[Context, Envelope]]:
        """One citizen's whole story."""
        s = self.sources
        rng = self.rng
        citizen_id = f"c-{self.seed}-{n:08d}"
        municipality = rng.choices(self._muni_codes, self._muni_weights)[0]
        low, high = rng.choices(self._bands, self._band_weights)[0]
        age = rng.randint(low, high)
        sex: Sex = "female" if rng.random() < 0.52 else "male"
        registered_on = self._ramp_day()
        birth = registered_on - timedelta(days=int((age + rng.random()) * 365.25))
        self.expected.citizens += 1
        yield self._wrap(
            s.registration,
            CitizenRegistered(
                citizen_id=citizen_id,
                birth_date=birth,
                sex=sex,
                municipality_code=municipality,
                priority_group="general",
                consent=Consent(data_processing=True),
                personal=SEALED,
            ),
            f"citizen-{citizen_id}",
            self._moment(registered_on),
        )
        if rng.random() > 0.88:
            return  # still waiting
        sites = self._sites_by_district[self._district_of[municipality]]
        site_id, site_municipality, product = rng.choice(sites)
        day = registered_on + timedelta(days=rng.randint(1, 6))
        for dose_number in (1, 2, 3):
            if day > self.end:
                return
            booster = dose_number == 3
            appointment_id = f"a-{citizen_id}-{dose_number}"
            yield self._wrap(
                s.booking,
                AppointmentBooked(
                    appointment_id=appointment_id,
                    citizen_id=citizen_id,
                    site_id=site_id,
                    municipality_code=site_municipality,
                    day=day,
                    product_code=product,
                    dose_number=dose_number,
                    booster=booster,
                    reason="nearest site with capacity",
                ),
                f"appointment-{appointment_id}",
                self._moment(day - timedelta(days=2)),
            )
            yield self._wrap(
                s.booking,
                SlotsReserved(
                    site_id=site_id, day=day, product_code=product, appointment_ids=[appointment_id]
                ),
                f"siteday-{site_id}-{day.isoformat()}",
                self._moment(day - timedelta(days=2)),
            )
            if day == self.end and rng.random() < 0.5:
                return  # booked for today, not seen yet
            when = self._moment(day)
            if rng.random() < 0.07:
                yield self._wrap(
                    s.booking,
                    AppointmentMissed(
                        appointment_id=appointment_id,
                        citizen_id=citizen_id,
                        site_id=site_id,
                        day=day,
                        product_code=product,
                    ),
                    f"appointment-{appointment_id}",
                    when + timedelta(hours=8),
                )
                return
            yield from self._dose(
                Visit(
                    citizen_id=citizen_id,
                    dose_number=dose_number,
                    booster=booster,
                    site_id=site_id,
                    site_municipality=site_municipality,
                    municipality=municipality,
                    product=product,
                    when=when,
                    age=age,
                    sex=sex,
                    appointment_id=appointment_id,
                )
            )
            keep_going = 0.82 if dose_number == 1 else 0.45
            if rng.random() > keep_going:
                return
            day = day + timedelta(
                days=rng.randint(21, 35) if dose_number == 1 else rng.randint(90, 140)
            )

    def _dose(self, visit: Visit) -> Iterator[tuple[Context, Envelope]]:
        citizen_id, dose_number, booster = visit.citizen_id, visit.dose_number, visit.booster
        site_id, site_municipality = visit.site_id, visit.site_municipality
        municipality, product, when = visit.municipality, visit.product, visit.when
        age, sex, appointment_id = visit.age, visit.sex, visit.appointment_id
        s = self.sources
        rng = self.rng
        dose_id = f"d-{citizen_id}-{dose_number}"
        lot = f"LOT-{site_id}-{when:%m}"
        event = DoseAdministered(
            dose_id=dose_id,
            citizen_id=citizen_id,
            site_id=site_id,
            site_municipality_code=site_municipality,
            citizen_municipality_code=municipality,
            product_code=product,
            lot_number=lot,
            dose_number=dose_number,
            series_length=2,
            series_complete=dose_number == 2,
            booster=booster,
            administered_at=when,
            age_at_vaccination=age,
            sex=sex,
            vaccinator_id=f"vac-{site_id}",
            appointment_id=appointment_id,
        )
        self.expected.doses += 1
        if dose_number == 1:
            self.expected.dose1_people += 1
        yield self._wrap(s.administration, event, f"dose-{dose_id}", when)
        yield self._wrap(
            s.booking,
            AppointmentAttended(
                appointment_id=appointment_id,
                citizen_id=citizen_id,
                site_id=site_id,
                day=when.date(),
                dose_id=dose_id,
            ),
            f"appointment-{appointment_id}",
            when + timedelta(seconds=5),
        )
        yield self._wrap(
            s.inventory,
            DoseConsumed(site_id=site_id, lot_number=lot, product_code=product, dose_id=dose_id),
            f"stock-{site_id}:{lot}",
            when + timedelta(seconds=6),
        )
        given = self._doses_at.get((site_id, product), 0) + 1
        self._doses_at[(site_id, product)] = given
        if given % 10 == 0:
            yield self._wrap(
                s.inventory,
                StockLevelChanged(
                    location_id=site_id,
                    product_code=product,
                    # Between 2 and 30 days of what the site has been giving.
                    doses_available=round(
                        given / max(1, (when.date() - self.start).days + 1) * rng.uniform(2, 30)
                    ),
                    earliest_expiry=when.date() + timedelta(days=60),
                ),
                f"level-{site_id}:{product}",
                when + timedelta(seconds=7),
            )
        if given % 45 == 0:
            yield self._wrap(
                s.inventory,
                DosesWasted(
                    site_id=site_id,
                    lot_number=lot,
                    product_code=product,
                    doses=rng.randint(1, 6),
                    reason="end_of_day",
                ),
                f"stock-{site_id}:{lot}",
                when + timedelta(seconds=8),
            )
        if rng.random() < 0.001:
            yield self._wrap(
                s.administration,
                AdverseEventReported(
                    report_id=f"aefi-{dose_id}",
                    dose_id=dose_id,
                    citizen_id=citizen_id,
                    product_code=product,
                    lot_number=lot,
                    symptoms=["fever", "headache"],
                    onset_at=when + timedelta(hours=12),
                    serious=rng.random() < 0.1,
                    outcome="recovered",
                    site_id=site_id,
                ),
                f"aefi-{dose_id}",
                when + timedelta(hours=13),
            )
        if rng.random() < 0.003:  # a correction: the right lot, same time
            yield self._wrap(
                s.administration,
                DoseCorrected(
                    dose_id=dose_id,
                    citizen_id=citizen_id,
                    site_id=site_id,
                    product_code=product,
                    lot_number=f"{lot}-B",
                    dose_number=dose_number,
                    series_length=2,
                    series_complete=dose_number == 2,
                    booster=booster,
                    administered_at=when,
                    reason="wrong lot",
                    site_municipality_code=site_municipality,
                    citizen_municipality_code=municipality,
                    age_at_vaccination=age,
                    sex=sex,
                ),
                f"dose-{dose_id}",
                when + timedelta(minutes=30),
            )
        if rng.random() < 0.002:  # entered twice: the copy is voided
            copy = f"{dose_id}-x"
            yield self._wrap(
                s.administration,
                msgspec.structs.replace(event, dose_id=copy, appointment_id=None),
                f"dose-{copy}",
                when + timedelta(minutes=1),
            )
            yield self._wrap(
                s.administration,
                DoseVoided(
                    dose_id=copy,
                    citizen_id=citizen_id,
                    site_id=site_id,
                    product_code=product,
                    lot_number=lot,
                    dose_number=dose_number,
                    reason="entered twice",
                ),
                f"dose-{copy}",
                when + timedelta(minutes=20),
            )
        if dose_number == 2:
            yield self._wrap(
                s.certificates,
                CertificateIssued(
                    uvci=f"URN:UVCI:01:RS:{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}",
                    citizen_id=citizen_id,
                    dose_id=dose_id,
                    dose_number=2,
                    total_doses=2,
                    product_code=product,
                    issued_at=when + timedelta(minutes=2),
                    expires_at=when + timedelta(days=270),
                    key_id="synthetic",
                ),
                f"certificate-{dose_id}",
                when + timedelta(minutes=2),
            )

    def envelopes(self, limit: int | None = None) -> Iterator[tuple[Context, Envelope]]:
        """Sites, then citizens one after another until `limit` events (or forever)."""
        produced = 0
        for item in self.define_sites():
            produced += 1
            yield item
        n = 0
        while limit is None or produced < limit:
            for item in self.citizen(n):
                produced += 1
                yield item
            n += 1
