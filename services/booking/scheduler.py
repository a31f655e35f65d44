"""The auto-scheduler's planning algorithm: a pure function, no I/O.

    plan(waiting citizens, free capacity per site/day/product, bookable stock per
         site/product) -> proposed bookings + why each other citizen is left waiting

Greedy in fairness order (ranking.py): each citizen, highest priority first, takes the
closest tier, then their most preferred product, then the earliest day with a site
that has both a free slot and stock. Capacity and stock only ever go down while
planning, so a citizen served earlier always saw every slot a later one gets: a
higher-priority citizen is never left waiting for capacity that a lower-priority
citizen with the same reach got.

Cost: O(citizens x tiers x products) lookups plus O(sites x days x products) to build
the indexes, never O(citizens x sites). For each (area, product) the planner keeps,
per day, the list of sites with capacity there and a cursor that only moves forward
past sites that filled up or ran out of stock, and a "first day not exhausted"
cursor; an area is a municipality, a district or the whole country. Eligibility is
decided once per distinct input, not per citizen (bench.booking's 1,000,000 have 36,105:
a birth date counts only for those not past every age limit throughout the period).

Stock rule: `stock[(site, product)]` is what may still be booked of that product at
that site over the whole horizon (the loader passes doses available minus doses
already booked for today and later); the planner books no more than that.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta

import msgspec

from immunreg.reference.vaccines import VaccineCatalog, VaccineProduct, vaccine_catalog
from immunreg.structs import Struct

from .eligibility import ANY, NO_CAPACITY, NO_STOCK, NextDose, age_window, eligibility
from .ranking import (
    ORDER_SPAN,
    SAME_SITE,
    Decision,
    citizen_tiers,
    priority_rank,
    site_areas,
)


class Citizen(Struct, gc=False):
    """A citizen waiting for an appointment, as the planner sees them."""

    citizen_id: str
    birth_date: date
    municipality_code: str
    priority_group: str
    order: int  # registration order (ranking.registration_order)
    ruled_out: tuple[str, ...] = ()  # products the declared conditions rule out
    preferences: tuple[str, ...] = (ANY,)
    preferred_municipality_code: str | None = None
    due: NextDose = NextDose()


class SiteInfo(msgspec.Struct, frozen=True):
    site_id: str
    municipality_code: str


class Proposal(Struct, gc=False):
    """A booking the planner proposes; `decision` explains it."""

    citizen_id: str
    site_id: str
    day: date
    product_code: str
    dose_number: int
    booster: bool
    tier: int
    preference_rank: int
    first_day: date

    def decision(self, citizen: Citizen, site_municipality: str) -> Decision:
        """The planner's choices, for ranking.explain."""
        prefs = citizen.preferences or (ANY,)
        return Decision(
            priority_group=citizen.priority_group,
            tier=self.tier,
            site_id=self.site_id,
            site_municipality=site_municipality,
            product_code=self.product_code,
            preference_rank=self.preference_rank,
            any_product=self.preference_rank < len(prefs) and prefs[self.preference_rank] == ANY,
            day=self.day,
            first_day=self.first_day,
            dose_number=self.dose_number,
            booster=self.booster,
        )


class Left(msgspec.Struct, frozen=True, gc=False):
    """A citizen the plan does not book, and why (eligibility.* reason codes)."""

    citizen_id: str
    reason: str


class Plan(msgspec.Struct, kw_only=True):
    bookings: list[Proposal]
    waiting: list[Left]

    def waiting_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(w.reason for w in self.waiting).items()))


Capacity = Mapping[tuple[str, date, str], int]
Stock = Mapping[tuple[str, str], int]


class _Index:
    """Free slots and stock, indexed for the greedy search."""

    def __init__(
        self,
        sites: Sequence[SiteInfo],
        capacity: Capacity,
        stock: Stock,
        *,
        start: date,
        days: int,
        products: list[str],
    ) -> None:
        self.days = days
        self.products = products
        self.pidx = {code: i for i, code in enumerate(products)}
        ordered = sorted(sites, key=lambda s: s.site_id)
        self.site_ids = [s.site_id for s in ordered]
        self.site_muni = [s.municipality_code for s in ordered]
        self.sidx = {s.site_id: i for i, s in enumerate(ordered)}
        n_products = len(products)
        self.cap = array("l", bytes(8 * len(ordered) * days * n_products))
        self.stock = array("l", bytes(8 * len(ordered) * n_products))
        for (site_id, product), doses in stock.items():
            s = self.sidx.get(site_id)
            p = self.pidx.get(product)
            if s is not None and p is not None and doses > 0:
                self.stock[s * n_products + p] = doses
        start_ord = start.toordinal()
        for (site_id, day, product), free in capacity.items():
            s = self.sidx.get(site_id)
            p = self.pidx.get(product)
            d = day.toordinal() - start_ord
            if s is not None and p is not None and 0 <= d < days and free > 0:
                self.cap[(s * days + d) * n_products + p] = free
        self.site_area_keys = [site_areas(m) for m in self.site_muni]
        # (area, product) -> per day: sites with capacity and stock, a cursor, and the
        # capacity left ignoring stock (to tell no_stock from no_capacity).
        self.lists: dict[tuple[str, int], list[list[int]]] = {}
        self.cursors: dict[tuple[str, int], list[int]] = {}
        self.first: dict[tuple[str, int], int] = {}
        self.left: dict[tuple[str, int], list[int]] = {}
        for s in range(len(ordered)):
            for p in range(n_products):
                has_stock = self.stock[s * n_products + p] > 0
                for d in range(days):
                    free = self.cap[(s * days + d) * n_products + p]
                    if free <= 0:
                        continue
                    for area in self.site_area_keys[s]:
                        key = (area, p)
                        if key not in self.left:
                            self.lists[key] = [[] for _ in range(days)]
                            self.cursors[key] = [0] * days
                            self.first[key] = 0
                            self.left[key] = [0] * days
                        self.left[key][d] += free
                        if has_stock:
                            self.lists[key][d].append(s)

    def find(self, key: tuple[str, int], p: int, lo: int, hi: int) -> tuple[int, int] | None:
        """The earliest (site, day) in [lo, hi] of this area with a slot and stock."""
        by_day = self.lists.get(key)
        if by_day is None:
            return None
        first = self.first[key]
        d = lo if lo > first else first
        cursors = self.cursors[key]
        cap = self.cap
        stock = self.stock
        days = self.days
        n_products = len(self.products)
        while d <= hi:
            sites = by_day[d]
            i = cursors[d]
            n = len(sites)
            while i < n:
                s = sites[i]
                if cap[(s * days + d) * n_products + p] > 0 and stock[s * n_products + p] > 0:
                    cursors[d] = i
                    return s, d
                i += 1
            cursors[d] = i
            if d == first:
                first += 1
                self.first[key] = first
            d += 1
        return None

    def at_site(self, s: int, p: int, lo: int, hi: int) -> int | None:
        """The earliest day in [lo, hi] with a slot and stock at one site."""
        n_products = len(self.products)
        if self.stock[s * n_products + p] <= 0:
            return None
        for d in range(lo, hi + 1):
            if self.cap[(s * self.days + d) * n_products + p] > 0:
                return d
        return None

    def take(self, s: int, d: int, p: int) -> None:
        n_products = len(self.products)
        self.cap[(s * self.days + d) * n_products + p] -= 1
        self.stock[s * n_products + p] -= 1
        for area in self.site_area_keys[s]:
            self.left[(area, p)][d] -= 1

    def capacity_without_stock(self, key: tuple[str, int], lo: int, hi: int) -> bool:
        left = self.left.get(key)
        return left is not None and any(x > 0 for x in left[lo : hi + 1])


def plan(
    citizens: Iterable[Citizen],
    sites: Sequence[SiteInfo],
    capacity: Capacity,
    stock: Stock,
    *,
    start: date,
    days: int,
    catalog: VaccineCatalog | None = None,
    allow_anywhere: bool = True,
) -> Plan:
    """Book as many waiting citizens as capacity and stock allow, fairly (see module doc).

    `capacity[(site, day, product)]` is the number of free slots; days outside
    [start, start + days) are ignored.
    """
    catalog = catalog or vaccine_catalog()
    products = catalog.codes()
    index = _Index(sites, capacity, stock, start=start, days=days, products=products)
    end = start + timedelta(days=days - 1)
    day_of = [start + timedelta(days=d) for d in range(days)]  # a window's offsets are in range
    # One integer per citizen (ranking.sort_key: rank, then registration order), the
    # rank's part computed once per group: comparing ints, not (rank, order) tuples, is
    # about 4 times cheaper for a national list (1M: 4.3-5.0 s of CPU -> 1.2-1.3 s).
    spans: dict[str, int] = {}
    ordered = sorted(
        citizens,
        key=lambda c: (
            (
                spans[c.priority_group]
                if c.priority_group in spans
                else spans.setdefault(
                    c.priority_group, priority_rank(c.priority_group) * ORDER_SPAN
                )
            )
            + c.order
        ),
    )
    bookings: list[Proposal] = []
    waiting: list[Left] = []
    # Eligibility reads only these of a citizen, and most citizens share them (a birth
    # date counts only near an age limit: `_ages`), so each is judged once per plan.
    judged: dict[_Judged, tuple[str | None, Windows]] = {}
    ages: dict[date, tuple[date, date | None]] = {}
    products_in_use = [catalog[code] for code in products]
    for citizen in ordered:
        due = citizen.due
        born = citizen.birth_date
        old_enough, too_old = ages.get(born) or ages.setdefault(born, _ages(born, products_in_use))
        # Every age limit met throughout: one birth date judges as another.
        alike = old_enough <= start and (
            too_old is None or too_old >= max(end, due.earliest or start)
        )
        inputs = (
            None if alike else born,
            citizen.ruled_out,
            citizen.preferences,
            due.product_code,
            due.earliest,
            due.latest,
        )
        verdict = judged.get(inputs)
        if verdict is None:
            verdict = judged[inputs] = _judge(citizen, index, start, end, catalog)
        reason, windows = verdict
        if reason is not None:
            waiting.append(Left(citizen.citizen_id, reason))
            continue
        found = _choose(index, citizen, windows, allow_anywhere)
        if found is None:
            waiting.append(
                Left(citizen.citizen_id, _why_not(index, citizen, windows, allow_anywhere))
            )
            continue
        tier, s, d, p, rank = found
        index.take(s, d, p)
        first_day = min(lo for q, r, lo, _ in windows if q == p and r == rank)
        bookings.append(
            Proposal(
                citizen_id=citizen.citizen_id,
                site_id=index.site_ids[s],
                day=day_of[d],
                product_code=products[p],
                dose_number=citizen.due.dose_number,
                booster=citizen.due.booster,
                tier=tier,
                preference_rank=rank,
                first_day=day_of[first_day],
            )
        )
    return Plan(bookings=bookings, waiting=waiting)


# What eligibility reads of a citizen: birth date (None where it cannot matter),
# ruled-out products, preferences, and the due dose's product, earliest and latest day.
_Judged = tuple[date | None, tuple[str, ...], tuple[str, ...], str | None, date | None, date | None]


def _ages(born: date, products: Sequence[VaccineProduct]) -> tuple[date, date | None]:
    """The day the products' every minimum age is reached, and the last day none's
    maximum is passed (None: none has one). Eligibility reads a birth date only through
    these limits: a citizen old enough for every product by the period's start and not
    too old for any until both its end and the dose's earliest day is judged the same
    whatever the date (first = max(start, earliest), last = min(end, latest), and a
    window that opens after the period is always "later")."""
    windows = [age_window(product, born) for product in products]
    old_enough = max((first for first, _ in windows), default=date.min)
    lasts = [last for _, last in windows if last is not None]
    return old_enough, min(lasts) if lasts else None


# (product index, rank, lo, hi) per product the citizen may get, best rank first, catalog
# order within a rank; shared by every citizen judged alike, hence a tuple.
Windows = tuple[tuple[int, int, int, int], ...]


def _judge(
    citizen: Citizen, index: _Index, start: date, end: date, catalog: VaccineCatalog
) -> tuple[str | None, Windows]:
    """Why the citizen cannot be booked in [start, end] (None: they can), and their
    windows as day offsets from start."""
    verdict = eligibility(
        birth_date=citizen.birth_date,
        ruled_out=citizen.ruled_out,
        preferences=citizen.preferences,
        due=citizen.due,
        start=start,
        end=end,
        catalog=catalog,
    )
    if verdict.reason is not None:
        return verdict.reason, ()
    start_ord = start.toordinal()
    return None, tuple(
        (
            index.pidx[w.product_code],
            w.preference_rank,
            w.first.toordinal() - start_ord,
            w.last.toordinal() - start_ord,
        )
        for w in verdict.windows
    )


def _choose(
    index: _Index,
    citizen: Citizen,
    windows: Windows,
    allow_anywhere: bool,
) -> tuple[int, int, int, int, int] | None:
    """(tier, site, day, product, rank) of the best slot, or None."""
    anchor = citizen.due.anchor_site
    if anchor is not None and (s := index.sidx.get(anchor)) is not None:
        best: tuple[int, int, int] | None = None  # (day, product, rank)
        for p, rank, lo, hi in windows:
            if best is not None and rank > best[2]:
                break
            d = index.at_site(s, p, lo, hi)
            if d is not None and (best is None or d < best[0]):
                best = (d, p, rank)
        if best is not None:
            return SAME_SITE, s, best[0], best[1], best[2]
    tiers = citizen_tiers(
        citizen.municipality_code, citizen.preferred_municipality_code, allow_anywhere
    )
    for tier, area in tiers:
        found: tuple[int, int, int, int] | None = None  # (day, site, product, rank)
        for p, rank, lo, hi in windows:
            if found is not None and rank > found[3]:
                break
            hit = index.find((area, p), p, lo, hi)
            if hit is not None and (found is None or hit[1] < found[0]):
                found = (hit[1], hit[0], p, rank)
        if found is not None:
            return tier, found[1], found[0], found[2], found[3]
    return None


def _why_not(
    index: _Index,
    citizen: Citizen,
    windows: Windows,
    allow_anywhere: bool,
) -> str:
    """no_stock when a site in reach had free slots but no stock for them, else no_capacity."""
    tiers = citizen_tiers(
        citizen.municipality_code, citizen.preferred_municipality_code, allow_anywhere
    )
    for _, area in tiers:
        for p, _, lo, hi in windows:
            if index.capacity_without_stock((area, p), lo, hi):
                return NO_STOCK
    return NO_CAPACITY
