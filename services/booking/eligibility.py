"""Who may be booked for which vaccine, and when. Pure; no I/O.

- Age limits come from the catalog and are checked on the day of the appointment:
  a citizen who turns 18 on the 5th can be booked for an 18+ product from the 5th.
- A product the citizen's declared conditions rule out is not offered: registration
  publishes those products (`ruled_out_products`, from `reference.health.ruled_out_by`)
  and keeps the conditions themselves sealed; booking never sees them.
- Preferences are product codes in order; `"any"` stands for every catalog product
  not named before it, all with the same preference rank. An empty list means "any".
- The next dose: dose 1 any time; dose n+1 of a series with the same product inside
  [last dose + min interval, last dose + max interval]; once the series is complete, a
  booster (by preference) from `booster_min_days_after_series` on, when the product has
  that rule. One booster; after it nothing more is due. A citizen whose window closed
  before the planning period (overdue) may be booked as soon as possible: a late second
  dose is better than none.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date, timedelta

from immunreg.reference.vaccines import VaccineCatalog, VaccineProduct, vaccine_catalog
from immunreg.structs import Struct

ANY = "any"

# Why an eligible citizen could not be booked, or why a citizen is not eligible yet.
NO_ELIGIBLE_PRODUCT = "no_eligible_product"
CONTRAINDICATED = "contraindicated"
OUTSIDE_HORIZON = "outside_horizon"
NO_CAPACITY = "no_capacity"
NO_STOCK = "no_stock"
SLOT_TAKEN = "slot_taken"


class DoseTaken(Struct):
    """A dose the citizen received (a DoseAdministered that was not voided)."""

    dose_number: int
    product_code: str
    day: date
    booster: bool = False
    site_id: str | None = None


class NextDose(Struct, gc=False):
    """The dose to book next and the days it may be given on (None: unbounded)."""

    dose_number: int = 1
    booster: bool = False
    product_code: str | None = None  # fixed for a series' later doses; else by preference
    earliest: date | None = None
    latest: date | None = None
    anchor_site: str | None = None  # where the previous dose was given


FIRST_DOSE = NextDose()


class ProductWindow(Struct):
    """A product the citizen may get, its preference rank, and the days it may be given."""

    product_code: str
    preference_rank: int
    first: date
    last: date


class Eligibility(Struct):
    """The products a citizen may be booked for in a period, or why none."""

    windows: list[ProductWindow] = []
    reason: str | None = None
    detail: str = ""


def birthday(born: date, years: int) -> date:
    """The day a person born on `born` turns `years` (29 February -> 1 March)."""
    try:
        return born.replace(year=born.year + years)
    except ValueError:
        return date(born.year + years, 3, 1)


def age_window(product: VaccineProduct, born: date) -> tuple[date, date | None]:
    """The first and last day (None: no end) the product's age limits allow."""
    first = birthday(born, product.min_age)
    last = None
    if product.max_age is not None:
        last = birthday(born, product.max_age + 1) - timedelta(days=1)
    return first, last


def next_dose(doses: Iterable[DoseTaken], catalog: VaccineCatalog | None = None) -> NextDose | None:
    """What to book next after these doses; None when nothing more is due."""
    catalog = catalog or vaccine_catalog()
    taken = sorted(doses, key=lambda d: (d.day, d.dose_number))
    if not taken:
        return FIRST_DOSE
    if any(d.booster for d in taken):
        return None  # one booster; nothing is due after it
    last = max(taken, key=lambda d: (d.dose_number, d.day))
    product = catalog.get(last.product_code)
    if product is None:
        return None  # an unknown product: no rule to plan the next dose by
    if last.dose_number < product.series_length:
        return NextDose(
            dose_number=last.dose_number + 1,
            product_code=product.product_code,
            earliest=last.day + timedelta(days=product.min_interval_days),
            latest=last.day + timedelta(days=product.max_interval_days),
            anchor_site=last.site_id,
        )
    if product.booster_min_days_after_series is None:
        return None
    return NextDose(
        dose_number=last.dose_number + 1,
        booster=True,
        earliest=last.day + timedelta(days=product.booster_min_days_after_series),
        anchor_site=last.site_id,
    )


def acceptable_products(
    preferences: Sequence[str], catalog: VaccineCatalog | None = None
) -> list[tuple[str, int]]:
    """(product, preference rank) in preference order; `"any"` expands to the rest."""
    catalog = catalog or vaccine_catalog()
    prefs = list(preferences) or [ANY]
    result: list[tuple[str, int]] = []
    seen: set[str] = set()
    for rank, code in enumerate(prefs):
        if code == ANY:
            fresh = [c for c in catalog.codes() if c not in seen]
            result += [(c, rank) for c in fresh]
            seen.update(fresh)
        elif code in catalog and code not in seen:
            result.append((code, rank))
            seen.add(code)
    return result


def eligibility(
    *,
    birth_date: date,
    ruled_out: Collection[str],
    preferences: Sequence[str],
    due: NextDose,
    start: date,
    end: date,
    catalog: VaccineCatalog | None = None,
) -> Eligibility:
    """The products (and days) the citizen may be booked for between `start` and `end`."""
    catalog = catalog or vaccine_catalog()
    if due.product_code is not None:
        candidates = [(due.product_code, 0)] if due.product_code in catalog else []
    else:
        candidates = acceptable_products(preferences, catalog)
    if not candidates:
        return Eligibility(reason=NO_ELIGIBLE_PRODUCT, detail="no accepted product is in use")
    allowed = [(c, r) for c, r in candidates if c not in ruled_out]
    if not allowed:
        return Eligibility(
            reason=CONTRAINDICATED,
            detail="declared conditions rule out every accepted product",
        )
    earliest = due.earliest or start
    latest = due.latest
    if latest is not None and latest < start:
        latest = None  # overdue: as soon as possible
    windows: list[ProductWindow] = []
    later = False
    for code, rank in allowed:
        age_first, age_last = age_window(catalog[code], birth_date)
        first = max(start, earliest, age_first)
        last = min(x for x in (end, latest, age_last) if x is not None)
        if first <= last:
            windows.append(
                ProductWindow(product_code=code, preference_rank=rank, first=first, last=last)
            )
        elif first > end and (age_last is None or age_last >= first):
            later = True  # due (or old enough) only after the period
    if windows:
        return Eligibility(windows=windows)
    if later and max(earliest, start) > end:
        return Eligibility(reason=OUTSIDE_HORIZON, detail=f"due from {earliest.isoformat()}")
    if later:
        return Eligibility(
            reason=NO_ELIGIBLE_PRODUCT, detail="too young for every accepted product"
        )
    return Eligibility(reason=NO_ELIGIBLE_PRODUCT, detail="the age limits rule out every product")


def unsuitable(
    *,
    product_code: str,
    dose_number: int,
    day: date,
    due: NextDose | None,
    ruled_out: Collection[str],
    preferences: Sequence[str],
    catalog: VaccineCatalog | None = None,
) -> str | None:
    """Why an open appointment no longer fits the citizen (None: it still does).

    Checked when preferences, conditions or doses change; the appointment's day is not
    held against a window that has closed meanwhile (late is better than never).
    """
    if due is None:
        return "no dose is due"
    if dose_number != due.dose_number:
        return f"dose {due.dose_number} is due, not dose {dose_number}"
    if due.product_code is not None and product_code != due.product_code:
        return f"the series continues with {due.product_code}"
    if product_code in ruled_out:
        return "contraindicated by a declared condition"
    if due.product_code is None and product_code not in {
        code for code, _ in acceptable_products(preferences, catalog)
    }:
        return "no longer an accepted product"
    if due.earliest is not None and day < due.earliest:
        return f"before the interval allows ({due.earliest.isoformat()})"
    return None
