"""A country's vaccination day, generated: who registers, where they are vaccinated, when.

Pure and deterministic for a seed: every load-generator process builds the same
`Country` and `Day` from (scale, seed, seconds) and takes its own share of them, so
nothing but the three numbers has to travel between processes.

The figures at scale 1.0 are Serbia's (2022 census, read through
`immunreg.reference`): 6.6 M residents, about 400 vaccination sites, the five
products of 2021, 80,000 doses in the day (the record day was over 75,000) and a
registration wave of 120,000. `scale` multiplies every count of people and events;
sites scale with its square root, so that at 1% a site still has a queue, not two
visitors a day. The day (06:00-22:00) is compressed into `seconds` of wall time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from immunreg.reference.geography import age_bands, municipalities
from immunreg.reference.vaccines import vaccine_catalog
from services.registration import jmbg

# --- the country at scale 1.0 -------------------------------------------------------------

SITES = 400
REGISTRATIONS = 120_000  # the day's registration wave
DOSES = 80_000  # Serbia's record day was over 75,000
SECOND_DOSE_SHARE = 0.45  # of the day's doses, citizens back for dose 2 (booked weeks ago)
CERTIFICATE_FETCH_SHARE = 0.5  # of the day's doses, the citizen fetches the certificate
QR_SHARE = 0.6  # of those fetches, the QR image too
VERIFICATIONS_PER_FETCH = 0.5  # a verifier scans a fetched certificate
ANALYST_READS = 30_000  # coverage and dashboard reads by the public, press and analysts
CORRECTED_SHARE = 0.2  # of the recalled lot's doses, found entered with the wrong lot
# Share of the day's doses by product (Serbia, spring 2021).
PRODUCT_SHARE = {
    "EU/1/20/1528": 0.45,
    "BBIBP-CorV": 0.30,
    "Sputnik-V": 0.10,
    "EU/1/21/1529": 0.09,
    "EU/1/20/1507": 0.06,
}
# Vials per lot as delivered (order of magnitude of 2021 deliveries); a lot grows to what
# the sites it supplies need when the scenario asks for more.
VIALS_PER_LOT = {
    "EU/1/20/1528": 1_950,  # ten trays of 195
    "BBIBP-CorV": 20_000,  # single-dose vials
    "Sputnik-V": 4_000,
    "EU/1/21/1529": 1_000,
    "EU/1/20/1507": 1_000,
}
PRIORITY_GROUPS = ["general"] * 14 + ["chronic_patient"] * 3 + ["health_worker", "critical_worker"]

# The day runs 06:00-22:00; shapes are relative weights per hour from 06:00.
DAY_START_HOUR = 6
DAY_HOURS = 16
# Registrations: the portal opens the wave at 08:00, the morning news doubles it by ten.
REGISTRATION_SHAPE = (1, 2, 8, 10, 9, 7, 6, 5, 5, 4, 4, 5, 6, 5, 3, 2)
# Doses: sites open 08:00-20:00, busy mid-morning and after work, a dip at lunch.
DOSE_SHAPE = (0, 0, 6, 9, 10, 9, 6, 7, 8, 9, 10, 8, 5, 0, 0, 0)
# Analysts and the public: office hours, and the evening news.
ANALYST_SHAPE = (1, 2, 4, 6, 6, 5, 4, 5, 5, 5, 4, 4, 5, 6, 4, 2)
RECALL_HOUR = 13.0  # the lot recall, in the middle of the day
SCHEDULING_HOURS = (10.0, 12.0, 14.0, 16.0, 18.0)
ALLOCATION_HOURS = (8.0, 15.0)  # national logistics plans the coming week's shipments
# Freshness probes: one tagged dose at a time in a cell nobody else is in, every few
# seconds of wall time (whatever the compression: it measures the system, not the day).
PROBE_EVERY_SECONDS = 3.0
PROBE_PRODUCT = "EU/1/20/1528"


@dataclass(frozen=True)
class Person:
    """A resident as the registration form describes them."""

    national_id: str
    birth_date: date
    sex: str
    municipality_code: str
    priority_group: str
    preferences: tuple[str, ...]

    def registration(self) -> dict[str, object]:
        """The body of POST /v1/citizens."""
        female = self.sex == "female"
        return {
            "national_id": self.national_id,
            "given_name": "Milica" if female else "Marko",
            "family_name": "Jovanović",
            "birth_date": self.birth_date.isoformat(),
            "sex": self.sex,
            "municipality_code": self.municipality_code,
            "phone": f"06{int(self.national_id[-8:]):08d}",
            "priority_group": self.priority_group,
            "vaccine_preferences": list(self.preferences),
            "consent": {"data_processing": True, "reminders": True},
        }


@dataclass(frozen=True)
class Site:
    """A vaccination site and what it may give per day, by product."""

    site_id: str
    municipality_code: str
    capacity: dict[str, int]

    def definition(self) -> dict[str, object]:
        """The body of PUT /v1/sites/{site_id}."""
        name = municipalities()[self.municipality_code].name
        return {
            "name": f"Dom zdravlja {name} ({self.site_id})",
            "municipality_code": self.municipality_code,
            "address": f"{name}, punkt {self.site_id[-4:]}",
            "opening_hours": "08:00-20:00",
            "daily_capacity": self.capacity,
        }


@dataclass(frozen=True)
class Lot:
    """A lot as received from its manufacturer, and which sites it goes to (vials each)."""

    lot_number: str
    product_code: str
    vials: int
    shipments: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class SecondDose:
    """A citizen vaccinated weeks ago, back today for dose 2 at the same site."""

    person: Person
    site_id: str
    product_code: str
    first_dose_days_ago: int
    at: float  # seconds into the day


@dataclass
class Day:
    """Everything the day holds, at a scale, for a seed, compressed into `seconds`."""

    scale: float
    seed: int
    seconds: float
    sites: list[Site] = field(default_factory=list)
    lots: list[Lot] = field(default_factory=list)
    # Registered before the day and booked for today by the eve's scheduling run.
    booked_for_today: list[Person] = field(default_factory=list)
    second_doses: list[SecondDose] = field(default_factory=list)
    registrations: list[tuple[float, Person]] = field(default_factory=list)
    first_dose_times: list[float] = field(default_factory=list)
    analyst_times: list[float] = field(default_factory=list)
    probes: list[tuple[float, Person]] = field(default_factory=list)
    probe_site: str = ""
    probe_municipality: str = ""
    recalled_lot: str = ""

    def at_hour(self, hour: float) -> float:
        """Seconds into the compressed day at a clock hour (06:00 is 0)."""
        return (hour - DAY_START_HOUR) / DAY_HOURS * self.seconds

    @property
    def recall_at(self) -> float:
        return self.at_hour(RECALL_HOUR)

    @property
    def scheduling_times(self) -> list[float]:
        return [self.at_hour(h) for h in SCHEDULING_HOURS]

    @property
    def allocation_times(self) -> list[float]:
        return [self.at_hour(h) for h in ALLOCATION_HOURS]

    def lots_at(self, site_id: str, product_code: str) -> list[str]:
        """The lots shipped to a site for a product, in the order the site uses them."""
        return [
            lot.lot_number
            for lot in self.lots
            if lot.product_code == product_code and any(s == site_id for s, _ in lot.shipments)
        ]


def scaled(count: float, scale: float, least: int = 1) -> int:
    """A count at scale 1.0 at another scale (never below `least`)."""
    return max(least, round(count * scale))


def arrivals(total: int, shape: Sequence[float], seconds: float, rng: random.Random) -> list[float]:
    """`total` moments in [0, seconds), spread by the hourly `shape` (exact total, sorted).

    Each hour gets its share (largest remainders first), uniformly at random within it:
    a non-homogeneous Poisson process conditioned on its count.
    """
    weights = sum(shape)
    exact = [total * w / weights for w in shape]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(shape)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    hour = seconds / len(shape)
    moments = [(i + rng.random()) * hour for i, n in enumerate(counts) for _ in range(n)]
    return sorted(moments)


class Census:
    """Draws residents by municipality, age and sex as the 2022 census counts them."""

    def __init__(self, rng: random.Random, excluded: str | None = None) -> None:
        self.rng = rng
        self.places = [m for m in municipalities().values() if m.code != excluded]
        self.place_weights = [m.population for m in self.places]
        self.bands = [b for b in age_bands() if (b.high or 99) >= 18]
        self.used: set[str] = set()
        self.catalog = vaccine_catalog().codes()

    def person(self, municipality: str | None = None, preferences: tuple[str, ...] = ()) -> Person:
        """One adult resident (a fresh JMBG each time)."""
        rng = self.rng
        place = municipality or rng.choices(self.places, self.place_weights)[0].code
        female_weights = [b.female for b in self.bands]
        male_weights = [b.male for b in self.bands]
        female = rng.random() < sum(female_weights) / (sum(female_weights) + sum(male_weights))
        band = rng.choices(self.bands, female_weights if female else male_weights)[0]
        low, high = max(band.low, 18), band.high if band.high is not None else 95
        born = date(2026, 1, 1) - timedelta(days=rng.randint(low * 365 + 366, high * 365 + 364))
        while True:
            serial = rng.randint(500, 999) if female else rng.randint(0, 499)
            national_id = jmbg.make(born, rng.randint(71, 89), serial)
            if national_id not in self.used and len(national_id) == 13:
                self.used.add(national_id)
                break
        if not preferences:
            preferences = rng.choice((("any",), ("any",), (rng.choice(self.catalog),)))
        return Person(
            national_id=national_id,
            birth_date=born,
            sex="female" if female else "male",
            municipality_code=place,
            priority_group=rng.choice(PRIORITY_GROUPS),
            preferences=preferences,
        )


def national_day(scale: float = 0.01, seed: int = 2021, seconds: float = 600.0) -> Day:
    """Serbia's day at `scale`, compressed into `seconds`; the same for the same arguments."""
    rng = random.Random(seed)
    day = Day(scale=scale, seed=seed, seconds=seconds)
    places = sorted(municipalities().values(), key=lambda m: (m.population, m.code))
    # Probes live where nobody else does: the smallest municipality is left out of the draw.
    day.probe_municipality = places[0].code
    census = Census(rng, excluded=day.probe_municipality)

    doses = scaled(DOSES, scale, least=20)
    second = round(doses * SECOND_DOSE_SHARE)
    first = doses - second
    site_count = max(8, round(SITES * math.sqrt(scale)))
    products = list(PRODUCT_SHARE)

    # Sites in municipalities drawn by population; each offers one to three products.
    weights = [m.population for m in places[1:]]
    chosen = rng.choices(places[1:], weights, k=site_count)
    per_site = doses / site_count
    for n, muni in enumerate(chosen, start=1):
        offered = {rng.choices(products, [PRODUCT_SHARE[p] for p in products])[0]}
        while rng.random() < 0.4 and len(offered) < 3:
            offered.add(rng.choice(products))
        capacity = {p: max(4, math.ceil(per_site * 1.5 / len(offered))) for p in sorted(offered)}
        day.sites.append(Site(f"SITE-{n:04d}", muni.code, capacity))
    # Citizens back for dose 2: vaccinated 3-5 weeks ago at a site offering their product.
    catalog = vaccine_catalog()
    second_times = arrivals(second, DOSE_SHAPE, seconds, rng)
    for at in second_times:
        site = rng.choice(day.sites)
        product = rng.choice(list(site.capacity))
        rule = catalog[product]
        ago = rng.randint(
            rule.min_interval_days, min(rule.max_interval_days, rule.min_interval_days + 7)
        )
        person = census.person(municipalities()[site.municipality_code].code, (product,))
        day.second_doses.append(SecondDose(person, site.site_id, product, ago, at))
    day.booked_for_today = [census.person() for _ in range(first)]
    day.first_dose_times = arrivals(first, DOSE_SHAPE, seconds, rng)
    registrations = scaled(REGISTRATIONS, scale)
    day.registrations = [
        (at, census.person()) for at in arrivals(registrations, REGISTRATION_SHAPE, seconds, rng)
    ]
    day.analyst_times = arrivals(scaled(ANALYST_READS, scale), ANALYST_SHAPE, seconds, rng)
    probe_count = max(2, int(seconds / PROBE_EVERY_SECONDS))
    probe_people = Census(rng)
    day.probes = [
        (
            (n + 0.5) * seconds / probe_count,
            probe_people.person(day.probe_municipality, (PROBE_PRODUCT,)),
        )
        for n in range(probe_count)
    ]
    day.probe_site = "SITE-PROBE"
    day.sites.append(
        Site(day.probe_site, day.probe_municipality, {PROBE_PRODUCT: probe_count + 10})
    )

    # Stock: each site gets 1.5 days of its capacity per product, from two lots (so a
    # recall leaves it another); a lot is as big as delivered, or as its sites need.
    demand: dict[str, list[tuple[str, int]]] = {p: [] for p in products}
    for site in day.sites:
        for product, daily in site.capacity.items():
            vials = math.ceil(daily * 1.5 / catalog[product].doses_per_vial) + 1
            demand[product].append((site.site_id, vials))
    for index, product in enumerate(products):
        wanted = demand[product]
        if not wanted:
            continue
        total = 2 * sum(v for _, v in wanted)
        size = scaled(VIALS_PER_LOT[product], scale, least=10)
        lot_count = max(2, math.ceil(total / size))
        shipments: list[list[tuple[str, int]]] = [[] for _ in range(lot_count)]
        for k, (site_id, vials) in enumerate(wanted):
            for lot in (k % lot_count, (k + 1) % lot_count):
                shipments[lot].append((site_id, vials))
        for n, sent in enumerate(shipments):
            needed = sum(v for _, v in sent)
            day.lots.append(
                Lot(
                    f"L{seed % 1000:03d}-{index + 1}{n:03d}",
                    product,
                    max(size, needed),
                    tuple(sent),
                )
            )
    # The recall hits the most used product's first lot; every site holding it has another.
    day.recalled_lot = next(lot.lot_number for lot in day.lots if lot.product_code == products[0])
    return day
