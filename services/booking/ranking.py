"""In which order citizens are booked, where, and how a booking is explained. Pure; no I/O.

Fairness: citizens are served by priority rank (reference/priority_groups.json, rank 1
first), then in registration order - the `recorded_at` of the registration event that
made them waiting, to the microsecond; equal keys keep their input order (the loader
breaks ties by citizen id).

Place: sites are tried tier by tier - the site of the previous dose (later doses and
boosters only), the preferred municipality, the home municipality, the district(s)
of those, then anywhere. Within a tier the citizen's most preferred product wins,
then the earliest day. A closer site is preferred to a more preferred product: the
citizen accepted every product they listed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache, lru_cache

from immunreg.reference.geography import municipalities
from immunreg.reference.health import priority_groups
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.structs import Struct

SAME_SITE = 0
PREFERRED_MUNICIPALITY = 1
HOME_MUNICIPALITY = 2
DISTRICT = 3
ANYWHERE = 4

TIER_NAMES = {
    SAME_SITE: "same_site",
    PREFERRED_MUNICIPALITY: "preferred_municipality",
    HOME_MUNICIPALITY: "home_municipality",
    DISTRICT: "district",
    ANYWHERE: "anywhere",
}

EVERYWHERE = "*"
ORDER_SPAN = 10**17  # registration order (µs since 1970) stays below this until year 5138
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@cache
def _ranks() -> dict[str, int]:
    return {code: group.rank for code, group in priority_groups().items()}


def priority_rank(group: str) -> int:
    """The group's rank (1 first); unknown groups come after every known one."""
    ranks = _ranks()
    return ranks.get(group, max(ranks.values(), default=0) + 1)


def registration_order(recorded_at: datetime) -> int:
    """The order key of a registration: microseconds since 1970 of its event."""
    delta = recorded_at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def sort_key(priority_group: str, order: int) -> int:
    """One integer that sorts by priority rank, then registration order."""
    return priority_rank(priority_group) * ORDER_SPAN + order


def municipality_area(code: str) -> str:
    return f"m:{code}"


def district_area(code: str) -> str:
    return f"d:{code}"


@cache
def district_of(municipality_code: str) -> str | None:
    """The district a municipality belongs to (None when unknown)."""
    m = municipalities().get(municipality_code)
    return m.district_code if m is not None else None


def site_areas(municipality_code: str) -> tuple[str, ...]:
    """Every area a site in this municipality serves: its municipality, district, anywhere."""
    district = district_of(municipality_code)
    areas = [municipality_area(municipality_code)]
    if district is not None:
        areas.append(district_area(district))
    areas.append(EVERYWHERE)
    return tuple(areas)


@cache
def citizen_tiers(
    home: str, preferred: str | None, allow_anywhere: bool = True
) -> tuple[tuple[int, str], ...]:
    """The (tier, area) pairs tried for a citizen, closest first, no area twice."""
    tiers: list[tuple[int, str]] = []
    seen: set[str] = set()

    def add(tier: int, area: str) -> None:
        if area not in seen:
            seen.add(area)
            tiers.append((tier, area))

    if preferred:
        add(PREFERRED_MUNICIPALITY, municipality_area(preferred))
    add(HOME_MUNICIPALITY, municipality_area(home))
    for code in (preferred, home):
        district = district_of(code) if code else None
        if district is not None:
            add(DISTRICT, district_area(district))
    if allow_anywhere:
        add(ANYWHERE, EVERYWHERE)
    return tuple(tiers)


class Decision(Struct):
    """What the planner decided for one citizen, in terms the reason text is built from."""

    priority_group: str
    tier: int
    site_id: str
    site_municipality: str
    product_code: str
    preference_rank: int
    any_product: bool
    day: date
    first_day: date  # the first day the citizen could have been booked on
    dose_number: int
    booster: bool = False


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def explain(decision: Decision) -> str:
    """Why this site, day and vaccine, in one line (no personal data)."""
    d = decision
    return (
        f"{_what(d.product_code, d.booster, d.dose_number, d.any_product, d.preference_rank)}"
        f" at {d.site_id} in {_where(d.tier, d.site_municipality)}; {_when(d.day, d.first_day)}; "
        f"{_served(d.priority_group)}"
    )


# explain's parts, each made once per distinct input: a national run explains every
# booking, and these few inputs repeat across hundreds of thousands of them (bounded:
# a long-lived service meets new days).
@lru_cache(maxsize=1024)
def _what(
    product_code: str, booster: bool, dose_number: int, any_product: bool, preference_rank: int
) -> str:
    product = vaccine_catalog().get(product_code)
    name = product.name if product is not None else product_code
    if booster:
        return f"booster of {name}"
    if dose_number > 1:
        return f"dose {dose_number} of {name} (same product as the series)"
    if any_product:
        return f"dose 1 of {name} (any product accepted)"
    return f"dose 1 of {name} ({_ordinal(preference_rank + 1)} choice)"


@lru_cache(maxsize=4096)
def _where(tier: int, site_municipality: str) -> str:
    muni = municipalities().get(site_municipality)
    place = muni.name if muni is not None else site_municipality
    return {
        SAME_SITE: "the site of the previous dose",
        PREFERRED_MUNICIPALITY: f"the preferred municipality {place}",
        HOME_MUNICIPALITY: f"the home municipality {place}",
        DISTRICT: f"the home district ({place})",
        ANYWHERE: f"{place}, nothing closer had a free slot",
    }[tier]


@lru_cache(maxsize=4096)
def _when(day: date, first_day: date) -> str:
    if day == first_day:
        return f"{day.isoformat()}, the first day possible"
    return f"{day.isoformat()}, the earliest free day from {first_day.isoformat()}"


@lru_cache(maxsize=256)
def _served(priority_group: str) -> str:
    rank = priority_rank(priority_group)
    return f"served in order of priority ({priority_group}, rank {rank}) then registration time"
