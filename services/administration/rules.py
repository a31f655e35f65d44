"""The checks a dose must pass before it is recorded: pure functions, one per rule.

Each rule reads only what the service's own read models hold (the citizen, the lot
at the site, the citizen's earlier doses) and the vaccine catalog, and returns a
`Violation` naming the rule, or None. `check_dose` runs them all and returns every
violation at once.

Dates that rules compare (expiry, age, intervals in days) are calendar dates in
Serbia (`LOCAL_TZ`): a lot that expires on 31 May may be used all of 31 May,
wherever the server's clock is.

Two kinds of violation:
- overridable: clinical and stock rules (`lot_*`, `product_mismatch`,
  `dose_number_out_of_sequence`, `interval_too_short`, `age_*`). A dose that was
  given is a fact, so an administrator may record it anyway with a reason;
- not overridable: without a known, non-erased citizen and a known product the
  record cannot be formed at all (`citizen_unknown`, `citizen_erased`,
  `product_unknown`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from immunreg.contracts.common import Sex
from immunreg.reference.calendar import age_on, local_date, national_timezone
from immunreg.reference.vaccines import VaccineCatalog, VaccineProduct
from immunreg.structs import Struct

LOCAL_TZ = national_timezone()

CitizenStatus = Literal["active", "withdrawn", "erased"]


class Violation(Struct):
    """A rule the dose breaks: `code` names it, `field` is the request field it concerns."""

    code: str
    field: str
    message: str
    overridable: bool = True


@dataclass(frozen=True)
class CitizenFacts:
    """The citizen as the `citizens` read model knows them (no names: registration seals them)."""

    citizen_id: str
    status: CitizenStatus
    birth_date: date | None
    sex: Sex | None
    municipality_code: str | None


@dataclass(frozen=True)
class LotFacts:
    """A lot as inventory's events describe it, and whether it ever reached the site."""

    lot_number: str
    product_code: str | None
    expiry_date: date | None
    recalled_at: datetime | None
    expired: bool
    at_site: bool


@dataclass(frozen=True)
class PriorDose:
    """An earlier dose of the citizen that still counts (not entered in error)."""

    dose_id: str
    dose_number: int
    product_code: str
    administered_at: datetime


@dataclass(frozen=True)
class DoseRequest:
    """What the dose to check claims."""

    citizen_id: str
    site_id: str
    lot_number: str
    product_code: str
    dose_number: int
    administered_at: datetime


# --- the citizen ---------------------------------------------------------------------------


def check_citizen(citizen: CitizenFacts | None) -> Violation | None:
    """The citizen must be registered and not erased (withdrawn is fine: withdrawing
    interest in appointments is not a refusal to have a given dose recorded)."""
    # A citizen heard of only through a withdrawal has no birth date or sex here yet.
    if citizen is None or (citizen.status != "erased" and citizen.birth_date is None):
        return Violation(
            code="citizen_unknown",
            field="citizen_id",
            message="no citizen is registered under this id (or registration is not here yet)",
            overridable=False,
        )
    if citizen.status == "erased":
        return Violation(
            code="citizen_erased",
            field="citizen_id",
            message="the citizen's data was erased; no record can be made for them",
            overridable=False,
        )
    return None


def check_age(
    birth_date: date | None, administered_at: datetime, product: VaccineProduct
) -> Violation | None:
    """The citizen's age on the day must be within the product's age limits."""
    if birth_date is None:
        return None
    age = age_on(birth_date, local_date(administered_at))
    if age < product.min_age:
        return Violation(
            code="age_below_minimum",
            field="administered_at",
            message=f"the citizen was {age}; {product.name} is for {product.min_age} and older",
        )
    if product.max_age is not None and age > product.max_age:
        return Violation(
            code="age_above_maximum",
            field="administered_at",
            message=f"the citizen was {age}; {product.name} is for {product.max_age} and younger",
        )
    return None


# --- the lot ---------------------------------------------------------------------------------


def check_product_known(product: VaccineProduct | None, product_code: str) -> Violation | None:
    """The product must be in the vaccine catalog (its series rules are needed)."""
    if product is None:
        return Violation(
            code="product_unknown",
            field="product_code",
            message=f"{product_code!r} is not a product of the vaccine catalog",
            overridable=False,
        )
    return None


def check_lot_at_site(lot: LotFacts | None, site_id: str) -> Violation | None:
    """Inventory must have delivered the lot to the site (received there, or shipped there)."""
    if lot is None or not lot.at_site:
        return Violation(
            code="lot_not_at_site",
            field="lot_number",
            message=f"inventory has no record of this lot at site {site_id}",
        )
    return None


def check_product_matches_lot(lot: LotFacts | None, product_code: str) -> Violation | None:
    """The product named must be the lot's product."""
    if lot is not None and lot.product_code is not None and lot.product_code != product_code:
        return Violation(
            code="product_mismatch",
            field="product_code",
            message=f"lot {lot.lot_number} is {lot.product_code}, not {product_code}",
        )
    return None


def check_lot_not_expired(lot: LotFacts | None, administered_at: datetime) -> Violation | None:
    """The lot must not have expired on the day of the dose (it may be used on its expiry
    date). Without a known expiry date, inventory's LotExpired decides."""
    if lot is None:
        return None
    if lot.expiry_date is not None:
        expired = local_date(administered_at) > lot.expiry_date
    else:
        expired = lot.expired
    if expired:
        return Violation(
            code="lot_expired",
            field="lot_number",
            message=f"lot {lot.lot_number} expired on {lot.expiry_date or 'an earlier date'}",
        )
    return None


def check_lot_not_recalled(lot: LotFacts | None, administered_at: datetime) -> Violation | None:
    """The lot must not have been recalled before the dose was given (a dose given
    before the recall, recorded later, is fine)."""
    if lot is not None and lot.recalled_at is not None and administered_at >= lot.recalled_at:
        return Violation(
            code="lot_recalled",
            field="lot_number",
            message=f"lot {lot.lot_number} was recalled on {local_date(lot.recalled_at)}",
        )
    return None


# --- the series ----------------------------------------------------------------------------


def check_dose_sequence(history: Sequence[PriorDose], dose_number: int) -> Violation | None:
    """The dose number must be the next one: one more than the highest the citizen has."""
    expected = max((d.dose_number for d in history), default=0) + 1
    if dose_number != expected:
        return Violation(
            code="dose_number_out_of_sequence",
            field="dose_number",
            message=f"the citizen's next dose is number {expected}, not {dose_number}",
        )
    return None


def previous_dose(history: Sequence[PriorDose], dose_number: int) -> PriorDose | None:
    """The latest earlier dose of the series before `dose_number`, if any."""
    earlier = [d for d in history if d.dose_number < dose_number]
    return max(earlier, key=lambda d: (d.dose_number, d.administered_at), default=None)


def required_interval_days(product: VaccineProduct, dose_number: int) -> int:
    """Days required since the previous dose: the series interval within the primary
    series, the booster interval after it."""
    if dose_number <= product.series_length:
        return product.min_interval_days
    if product.booster_min_days_after_series is not None:
        return product.booster_min_days_after_series
    return product.min_interval_days


def check_interval(
    history: Sequence[PriorDose],
    dose_number: int,
    administered_at: datetime,
    product: VaccineProduct,
) -> Violation | None:
    """Enough days must have passed since the previous dose (calendar days in Serbia)."""
    previous = previous_dose(history, dose_number)
    if previous is None:
        return None
    required = required_interval_days(product, dose_number)
    days = (local_date(administered_at) - local_date(previous.administered_at)).days
    if days < required:
        return Violation(
            code="interval_too_short",
            field="administered_at",
            message=(
                f"{days} days after dose {previous.dose_number}; "
                f"{product.name} dose {dose_number} needs at least {required}"
            ),
        )
    return None


# --- all of them -----------------------------------------------------------------------------


def check_dose(
    request: DoseRequest,
    citizen: CitizenFacts | None,
    lot: LotFacts | None,
    history: Sequence[PriorDose],
    catalog: VaccineCatalog,
) -> list[Violation]:
    """Every rule the dose breaks, in a stable order (empty: record it)."""
    product = catalog.get(request.product_code)
    found: list[Violation | None] = [
        check_citizen(citizen),
        check_product_known(product, request.product_code),
        check_lot_at_site(lot, request.site_id),
        check_product_matches_lot(lot, request.product_code),
        check_lot_not_expired(lot, request.administered_at),
        check_lot_not_recalled(lot, request.administered_at),
        check_dose_sequence(history, request.dose_number),
    ]
    if product is not None:
        found.append(check_interval(history, request.dose_number, request.administered_at, product))
        if citizen is not None:
            found.append(check_age(citizen.birth_date, request.administered_at, product))
    return [v for v in found if v is not None]
