"""The read models' rows and how events change them. Pure: no I/O.

Every derived figure is a function of *base rows* that each follow one stream
(a dose, an appointment, a citizen's registration), folded in stream order by
`evolve_*`. Figures that combine several streams (a citizen's coverage facts,
whether a citizen is waiting) are recomputed from those rows whenever one of
them changes (`citizen_facts`). So the model does not depend on how events of
different streams or topics interleave: a live consumer and a replay from
offset 0 end with the same tables.

Conventions (where the published language leaves room):
- A day is the calendar day in Serbia (Europe/Belgrade) of the event's time.
- A citizen "had dose 1" from their earliest dose that is not voided (whatever
  its dose number: a dose 2 recorded without a dose 1 still makes them
  vaccinated); "completed the primary series" from their earliest dose with
  `series_complete` or `booster` (a booster implies a completed series); "had a
  booster" from their earliest booster.
- Residence, sex and age come from the registration when there is one (birth
  date -> age on the day of the first dose), else from the first dose
  (`citizen_municipality_code`, `sex`, `age_at_vaccination`). Age bands are the
  2022 census's five-year bands. After `CitizenErased` the birth date is
  dropped and the first dose's age is used.
- Waiting: registered, not withdrawn or erased, no dose and no appointment
  still booked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from operator import attrgetter

import msgspec

from immunreg.contracts.administration import DoseAdministered, DoseCorrected, DoseVoided
from immunreg.contracts.booking import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentMissed,
    AppointmentRescheduled,
)
from immunreg.contracts.envelope import Event
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    RegistrationWithdrawn,
)
from immunreg.reference.calendar import age_on, national_timezone
from immunreg.reference.geography import AgeBand, age_bands, districts, municipalities
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.structs import Struct

REPORTING_TZ = national_timezone()
UNKNOWN = "unknown"

# What a dose counts as in the daily figures.
FIRST, SERIES, BOOSTER = "first", "series", "booster"
DOSE_KINDS = (FIRST, SERIES, BOOSTER)

# Appointment statuses.
BOOKED, ATTENDED, MISSED, CANCELLED = "booked", "attended", "missed", "cancelled"


def local_day(moment: datetime) -> date:
    """The calendar day in Serbia of an aware datetime."""
    return moment.astimezone(REPORTING_TZ).date()


def today() -> date:
    """Today in Serbia."""
    return datetime.now(REPORTING_TZ).date()


def band_of(age: int | None) -> str | None:
    """The census band of an age, or None for no (or an impossible) age."""
    if age is None or age < 0:
        return None
    for band in age_bands():
        if age >= band.low and (band.high is None or age <= band.high):
            return band.label
    return None


def district_of(municipality_code: str | None) -> str | None:
    """The district (ISO 3166-2:RS) of a municipality code, None when not in the census."""
    if municipality_code is None:
        return None
    found = municipalities().get(municipality_code)
    return found.district_code if found else None


# --- doses ---------------------------------------------------------------------------


class Dose(Struct):
    """One dose record as administration last published it (`doses`)."""

    dose_id: str
    citizen_id: str
    site_id: str
    site_municipality_code: str
    citizen_municipality_code: str
    product_code: str
    dose_number: int
    series_complete: bool
    booster: bool
    administered_at: datetime | None
    day: date | None
    age_at_vaccination: int | None
    sex: str | None
    voided: bool = False

    @property
    def counts(self) -> bool:
        """Whether the dose counts: recorded with a time, and not voided."""
        return not self.voided and self.day is not None

    @property
    def kind(self) -> str:
        """first, series (a later dose of the primary series) or booster."""
        if self.booster:
            return BOOSTER
        return FIRST if self.dose_number <= 1 else SERIES

    @property
    def age_band(self) -> str:
        """The census band of the age at this dose."""
        return band_of(self.age_at_vaccination) or UNKNOWN


DoseEvent = DoseAdministered | DoseCorrected | DoseVoided


def evolve_dose(dose: Dose | None, event: Event) -> Dose | None:
    """The dose after one of its events (a void keeps the record, marked voided)."""
    if isinstance(event, DoseAdministered):
        return Dose(
            dose_id=event.dose_id,
            citizen_id=event.citizen_id,
            site_id=event.site_id,
            site_municipality_code=event.site_municipality_code,
            citizen_municipality_code=event.citizen_municipality_code,
            product_code=event.product_code,
            dose_number=event.dose_number,
            series_complete=event.series_complete,
            booster=event.booster,
            administered_at=event.administered_at,
            day=local_day(event.administered_at),
            age_at_vaccination=event.age_at_vaccination,
            sex=event.sex,
            voided=dose.voided if dose else False,
        )
    if isinstance(event, DoseCorrected):
        # The corrected record in full; fields an older producer left empty keep their value.
        return Dose(
            dose_id=event.dose_id,
            citizen_id=event.citizen_id,
            site_id=event.site_id,
            site_municipality_code=event.site_municipality_code
            or (dose.site_municipality_code if dose else ""),
            citizen_municipality_code=event.citizen_municipality_code
            or (dose.citizen_municipality_code if dose else ""),
            product_code=event.product_code,
            dose_number=event.dose_number,
            series_complete=event.series_complete,
            booster=event.booster,
            administered_at=event.administered_at,
            day=local_day(event.administered_at),
            age_at_vaccination=event.age_at_vaccination
            if event.age_at_vaccination is not None
            else (dose.age_at_vaccination if dose else None),
            sex=event.sex if event.sex is not None else (dose.sex if dose else None),
            voided=dose.voided if dose else False,
        )
    if isinstance(event, DoseVoided):
        if dose is not None:
            return msgspec.structs.replace(dose, voided=True)
        return Dose(
            dose_id=event.dose_id,
            citizen_id=event.citizen_id,
            site_id=event.site_id,
            site_municipality_code="",
            citizen_municipality_code="",
            product_code=event.product_code,
            dose_number=event.dose_number,
            series_complete=False,
            booster=False,
            administered_at=None,
            day=None,
            age_at_vaccination=None,
            sex=None,
            voided=True,
        )
    return dose


DailyKey = tuple[date, str, str, str]  # day, product, age band, kind
SiteDailyKey = tuple[str, str, date]  # site, product, day


def dose_cells(dose: Dose | None) -> tuple[list[DailyKey], list[SiteDailyKey]]:
    """The daily-dose cells one dose record adds 1 to (none when it does not count)."""
    if dose is None or not dose.counts:
        return [], []
    assert dose.day is not None
    return (
        [(dose.day, dose.product_code, dose.age_band, dose.kind)],
        [(dose.site_id, dose.product_code, dose.day)],
    )


# --- appointments --------------------------------------------------------------------


class Appointment(Struct):
    """One appointment as booking last published it (`appointments`)."""

    appointment_id: str
    citizen_id: str
    site_id: str
    municipality_code: str
    day: date
    product_code: str
    status: str


def evolve_appointment(appointment: Appointment | None, event: Event) -> Appointment | None:
    """The appointment after one of its events."""
    if isinstance(event, AppointmentBooked):
        return Appointment(
            appointment_id=event.appointment_id,
            citizen_id=event.citizen_id,
            site_id=event.site_id,
            municipality_code=event.municipality_code,
            day=event.day,
            product_code=event.product_code,
            status=BOOKED,
        )
    if isinstance(event, AppointmentRescheduled):
        return Appointment(
            appointment_id=event.appointment_id,
            citizen_id=event.citizen_id,
            site_id=event.site_id,
            municipality_code=appointment.municipality_code if appointment else "",
            day=event.day,
            product_code=event.product_code,
            status=BOOKED,
        )
    if isinstance(event, AppointmentCancelled | AppointmentAttended | AppointmentMissed):
        status = {
            AppointmentCancelled: CANCELLED,
            AppointmentAttended: ATTENDED,
            AppointmentMissed: MISSED,
        }[type(event)]
        product = getattr(event, "product_code", None) or (
            appointment.product_code if appointment else ""
        )
        return Appointment(
            appointment_id=event.appointment_id,
            citizen_id=event.citizen_id,
            site_id=event.site_id,
            municipality_code=appointment.municipality_code if appointment else "",
            day=event.day,
            product_code=product,
            status=status,
        )
    return appointment


BookingKey = tuple[str, date, str]  # site, day, product
# (booked, attended, missed) added to a site's day; booked comes from slot events.
BookingCounts = tuple[int, int, int]


def appointment_cells(appointment: Appointment | None) -> dict[BookingKey, BookingCounts]:
    """What an appointment adds to its site's day: an attendance or a no-show."""
    if appointment is None or appointment.status not in (ATTENDED, MISSED):
        return {}
    key = (appointment.site_id, appointment.day, appointment.product_code)
    return {key: (0, 1, 0) if appointment.status == ATTENDED else (0, 0, 1)}


def pending_municipality(appointment: Appointment | None) -> str | None:
    """The municipality an appointment still booked counts in."""
    if appointment is None or appointment.status != BOOKED:
        return None
    return appointment.municipality_code or UNKNOWN


# --- citizens --------------------------------------------------------------------------


class Registration(Struct):
    """What registration published about a citizen (the `reg_*` columns of `citizens`)."""

    registered: bool = False
    withdrawn: bool = False
    erased: bool = False
    birth_date: date | None = None
    sex: str | None = None
    municipality_code: str | None = None


def evolve_registration(registration: Registration, event: Event) -> Registration:
    """The registration after one of the citizen's events."""
    if isinstance(event, CitizenRegistered):
        return Registration(
            registered=True,
            withdrawn=False,
            erased=registration.erased,
            birth_date=None if registration.erased else event.birth_date,
            sex=event.sex,
            municipality_code=event.municipality_code,
        )
    if isinstance(event, RegistrationWithdrawn):
        return msgspec.structs.replace(registration, withdrawn=True)
    if isinstance(event, CitizenErased):
        return msgspec.structs.replace(registration, erased=True, birth_date=None)
    return registration


class Facts(Struct):
    """A citizen's coverage facts and queue status (the derived columns of `citizens`)."""

    municipality_code: str | None = None
    district_code: str | None = None
    sex: str | None = None
    age_band: str | None = None
    dose1_date: date | None = None
    dose1_product: str | None = None
    complete_date: date | None = None
    complete_product: str | None = None
    booster_date: date | None = None
    booster_product: str | None = None
    waiting: bool = False

    @property
    def waiting_in(self) -> str | None:
        """The municipality the citizen waits in, if waiting."""
        return (self.municipality_code or UNKNOWN) if self.waiting else None


_in_order = attrgetter("administered_at", "dose_id")


def citizen_facts(registration: Registration, doses: Iterable[Dose], pending: bool) -> Facts:
    """A citizen's facts from their registration, their doses and whether one is booked."""
    # Once per citizen a batch touches (a replay: millions), so one pass, no generators.
    counted = [d for d in doses if d.counts]
    if len(counted) > 1:
        counted.sort(key=_in_order)
    first = counted[0] if counted else None
    complete = booster = None
    for d in counted:
        if d.booster:
            booster = d
            if complete is None:
                complete = d
            break
        if complete is None and d.series_complete:
            complete = d
    if registration.registered:
        municipality, sex = registration.municipality_code, registration.sex
    elif first is not None:
        municipality, sex = first.citizen_municipality_code or None, first.sex
    else:
        municipality, sex = None, None
    age_band = None
    if first is not None:
        assert first.day is not None
        if registration.birth_date is not None:
            age_band = band_of(age_on(registration.birth_date, first.day))
        else:
            age_band = band_of(first.age_at_vaccination)
        age_band = age_band or UNKNOWN
    waiting = (
        registration.registered
        and not registration.withdrawn
        and not registration.erased
        and first is None
        and not pending
    )
    return Facts(
        municipality_code=municipality,
        district_code=district_of(municipality),
        sex=sex,
        age_band=age_band,
        dose1_date=first.day if first else None,
        dose1_product=first.product_code if first else None,
        complete_date=complete.day if complete else None,
        complete_product=complete.product_code if complete else None,
        booster_date=booster.day if booster else None,
        booster_product=booster.product_code if booster else None,
        waiting=waiting,
    )


# --- coverage, pre-aggregated ---------------------------------------------------------
# Coverage on day D is the number of citizens whose <kind> date is on or before D. The
# model keeps, per kind and day, how many citizens' <kind> fell on that day in each cell
# of the dimensions a coverage query filters or groups by (`coverage_daily`), and for
# the start of every week with such days, the running sum of everything before it
# (`coverage_before`); an answer is one week's running sum plus at most a week of days.

COVERAGE_KINDS = ("1", "complete", "booster")
"""The dose kinds coverage is asked for (`dose=`), in the order of the Facts columns."""

ALL_MUNICIPALITIES = "*"
"""The municipality of a district's own cells: every citizen counts in their
municipality's cell and in their district's, so that an answer not grouped by
municipality reads about a seventh of the cells (no census code is `*`)."""

CoverageKey = tuple[str, date, str, str, str, str, str]
"""kind, day, municipality, district, age band, sex, product (None stored as `unknown`,
the key the answers show it under; no filter can ask for `unknown`)."""


def coverage_cells(facts: Facts) -> list[CoverageKey]:
    """The cells a citizen counts 1 in: per kind they have, on the day they had it,
    their municipality's and their district's."""
    district = facts.district_code or UNKNOWN
    band, sex = facts.age_band or UNKNOWN, facts.sex or UNKNOWN
    cells: list[CoverageKey] = []
    for kind, day, product in (
        ("1", facts.dose1_date, facts.dose1_product),
        ("complete", facts.complete_date, facts.complete_product),
        ("booster", facts.booster_date, facts.booster_product),
    ):
        if day is not None:
            for municipality in (facts.municipality_code or UNKNOWN, ALL_MUNICIPALITIES):
                cells.append((kind, day, municipality, district, band, sex, product or UNKNOWN))
    return cells


def week_of(day: date) -> date:
    """The Monday that starts the week of `day` (the running sums' checkpoints)."""
    return day - timedelta(days=day.weekday())


# --- census denominators ------------------------------------------------------------
# What a coverage figure is divided by, and how small numbers are withheld. The 2022
# census has no age or sex structure below the national level, so a place's
# population of one band (or sex) is estimated as its total times the national share.

SUPPRESS_BELOW = 5
"""The default small-number threshold (`SMALL_NUMBER_THRESHOLD`): anonymous callers see
counts of 1-4 withheld and every other count rounded to a multiple of 5."""
EXACT_THRESHOLD = 1
"""The threshold of callers who see exact numbers (public-health staff, admins)."""


def disclosed(count: int, threshold: int) -> int | None:
    """What a caller held to `threshold` is shown of a count of people or doses.

    0 stays 0; 1 to threshold - 1 is withheld (None); anything larger is rounded to
    the nearest multiple of the threshold (halves up). Rounding is what keeps a
    withheld cell withheld: a published total minus the published cells beside it
    is off by up to half the threshold per figure, more than the 1-4 it would reveal
    (docs/security.md). With threshold 1 (`EXACT_THRESHOLD`) every count is shown as it is.
    """
    if threshold <= EXACT_THRESHOLD or count == 0:
        return count
    if count < threshold:
        return None
    return threshold * ((count + threshold // 2) // threshold)


def possible_counts(published: int | None, threshold: int) -> tuple[int, int]:
    """The least and most a count could be, seen only as `disclosed` published it."""
    if published is None:
        return 1, threshold - 1
    if published == 0 or threshold <= EXACT_THRESHOLD:
        return published, published
    return max(published - threshold // 2, threshold), published + (threshold - 1) // 2


def disclosed_with_total(
    cells: Sequence[int], threshold: int
) -> tuple[list[int | None], int | None]:
    """Cells and their total as published: each disclosed, and the total withheld as well
    when, read beside the published cells, it would narrow what a withheld cell could be.

    Whoever subtracts the published cells from the published total learns the sum of
    the withheld ones only within bounds; the total is published only if those bounds
    still allow every withheld cell to be anything from 1 to threshold - 1. (Without
    the check, cells 0, 4, 4 publish as 0, -, - with a total of 10, which pins both
    withheld cells to 4.)
    """
    shown = [disclosed(c, threshold) for c in cells]
    total = disclosed(sum(cells), threshold)
    withheld = shown.count(None)
    if total is None or withheld == 0:
        return shown, total
    known = [possible_counts(p, threshold) for p in shown if p is not None]
    low_total, high_total = possible_counts(total, threshold)
    most = threshold - 1
    # What subtraction leaves for the withheld cells together, then for one of them
    # when the others are as large, or as small, as they can be.
    least_sum = max(withheld, low_total - sum(high for _, high in known))
    greatest_sum = min(withheld * most, high_total - sum(low for low, _ in known))
    one_at_least = least_sum - (withheld - 1) * most
    one_at_most = greatest_sum - (withheld - 1)
    if one_at_least <= 1 and one_at_most >= most:
        return shown, total
    return shown, None


def percentage(part: int | None, whole: int | None) -> float | None:
    """A percentage to 6 significant digits (small shares stay visible: 0.000118946)."""
    if part is None or not whole:
        return None
    return float(f"{100.0 * part / whole:.6g}")


def per_100k(part: int, whole: int) -> float | None:
    """A rate per 100,000, to two decimals (None without a denominator)."""
    return round(100_000 * part / whole, 2) if whole else None


def age_band(label: str | None) -> AgeBand | None:
    """The census age band with this label (None for none or an unknown label)."""
    return next((b for b in age_bands() if b.label == label), None)


def national_population() -> int:
    """The census population of the whole country."""
    return sum(b.population for b in age_bands())


def demographic_population(band: AgeBand | None, sex: str | None) -> int | None:
    """National population of a band and/or sex (None: no census figure, e.g. sex other)."""
    if sex is not None and sex not in ("female", "male"):
        return None
    bands = [band] if band is not None else age_bands()
    if sex == "female":
        return sum(b.female for b in bands)
    if sex == "male":
        return sum(b.male for b in bands)
    return sum(b.population for b in bands)


def population(
    *, geo: int | None, band: AgeBand | None, sex: str | None
) -> tuple[int | None, bool]:
    """A population and whether it is estimated (a place's share of a band or sex)."""
    demographic = demographic_population(band, sex)
    if geo is None:
        return demographic, False
    if band is None and sex is None:
        return geo, False
    if demographic is None:
        return None, False
    return round(geo * demographic / national_population()), True


def place_population(group_by: str, key: str) -> int | None:
    """The census population of a district or municipality (None when unknown)."""
    if group_by == "district":
        d = districts().get(key)
        return d.population if d else None
    m = municipalities().get(key)
    return m.population if m else None


def group_names(group_by: str) -> dict[str, str]:
    """Every group the census (or the catalog) knows, so empty groups show as 0."""
    if group_by == "district":
        return {code: d.name for code, d in districts().items()}
    if group_by == "municipality":
        return {code: m.name for code, m in municipalities().items()}
    if group_by == "age_band":
        return {b.label: b.label for b in age_bands()}
    if group_by == "sex":
        return {"female": "female", "male": "male"}
    return {}


def product_name(code: str) -> str:
    """The catalog name of a product code (the code itself when unknown)."""
    product = vaccine_catalog().get(code)
    return product.name if product else code


# --- what a report may be asked for ----------------------------------------------------

# Five years of daily rows is already more than a dashboard draws; longer periods are
# work for an export, not for a request.
MAX_PERIOD_DAYS = 1830


def location_district(location_id: str, site_municipality: str | None) -> str | None:
    """The district a stock location is in: a site's by its municipality, a district
    warehouse's (`WH-RS-14`) by its id; None for the national warehouse and the unknown."""
    if site_municipality is not None:
        return district_of(site_municipality)
    code = location_id.removeprefix("WH-")
    return code if code != location_id and code in districts() else None


def run_out_day(doses: int, booked_by_day: Iterable[tuple[date, int]]) -> date | None:
    """The first day the booked appointments need more doses than `doses` (None: never,
    as far as appointments are booked)."""
    used = 0
    for day, booked in sorted(booked_by_day):
        used += booked
        if used > doses:
            return day
    return None


def age_band_refusal(label: str | None) -> str | None:
    """Why `label` is not a census age band to filter by, or None when it is (or absent)."""
    if label is None or label in {band.label for band in age_bands()}:
        return None
    labels = ", ".join(band.label for band in age_bands())
    return f"not a census age band (one of {labels})"


def period_refusal(start: date, end: date) -> str | None:
    """Why [start, end] is not a period to report on, or None when it is."""
    if start > end:
        return "must not be after `to`"
    if (end - start).days > MAX_PERIOD_DAYS:
        return "at most five years at a time"
    return None
