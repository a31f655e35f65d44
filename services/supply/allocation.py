"""The allocation planner: a pure, deterministic function, no I/O.

    plan(AllocationInput) -> Allocation: proposed shipments from warehouses to sites,
    each explained, the chunk-level fills behind them, and what stays unmet

Demand, per site, product and day of the horizon:

- booked: appointments already booked there;
- waiting: citizens waiting per municipality (by their first preferred product; "any"
  goes to the product with the most doses available nationally among those the sites
  in reach offer, ties by product code), routed like booking's scheduler would seat
  them: free slots (capacity minus booked) of the sites in their municipality, else of
  their district, earliest day first, then by site id.

Open-vial wastage: a vial opened on a day is used up or lost that day, so a day's need
is rounded up to whole vials (ceil(doses / doses per vial) vials). Booked and waiting
doses of one day share their vials: waiting need on a day is the whole day's rounded
need minus the booked part's.

What covers it, in order:

1. doses already at the site (on hand) and on their way (in transit or planned
   shipments), earliest day first, booked demand of every day before any waiting;
2. sealed vials at warehouses, first-expiry-first-out: each day's shortfall takes the
   lot expiring first among those usable on that day (expiry on or after the day)
   whose storage the site's cold chain holds; ties: the site's district warehouse
   before the national one and others, then location id, then lot number.

Priorities: every booked shortfall is filled before any waiting one ("booked first").
Within each pass shortfalls are served by (day, open replenishment alert first, site
id): earlier need first, a site on alert before one that is not, then the site id as
the documented tie-break. Whole vials only; input order never changes the result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from immunreg.contracts.supply import LineReasons, ProductBalance, ProposedShipment
from immunreg.reference.geography import municipalities

ANY = "any"
Kind = Literal["booked", "waiting"]


def district_warehouse(district_code: str) -> str:
    """The warehouse id of a district (e.g. WH-RS-14), as inventory names locations."""
    return f"WH-{district_code}"


@dataclass(frozen=True)
class SiteSupply:
    """A vaccination site as the planner sees it."""

    site_id: str
    municipality_code: str
    district_code: str
    storages: frozenset[str]  # the cold chain it holds: refrigerated, frozen, ultra_cold


@dataclass(frozen=True)
class WarehouseLot:
    """Sealed vials of one lot at one warehouse that may still be shipped."""

    location_id: str
    lot_number: str
    product_code: str
    expiry_date: date
    doses_per_vial: int
    storage: str
    vials: int


@dataclass(frozen=True)
class DueDelivery:
    """Doses a contract still expects on a date."""

    product_code: str
    expected_date: date
    doses: int


@dataclass(frozen=True)
class AllocationInput:
    """Everything one run plans from (keys: site, day, product / site, product)."""

    start: date
    days: int
    products: Mapping[str, int]  # product code -> doses per vial
    sites: Sequence[SiteSupply]
    booked: Mapping[tuple[str, date, str], int] = field(default_factory=dict)
    free_slots: Mapping[tuple[str, date, str], int] = field(default_factory=dict)
    waiting: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (municipality, product)
    on_hand: Mapping[tuple[str, str], int] = field(default_factory=dict)
    in_transit: Mapping[tuple[str, str], int] = field(default_factory=dict)
    lots: Sequence[WarehouseLot] = ()
    due: Sequence[DueDelivery] = ()
    alerts: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Fill:
    """Vials of one lot sent to cover one day's shortfall of one kind at one site."""

    site_id: str
    product_code: str
    day: date
    kind: Kind
    location_id: str
    lot_number: str
    vials: int


@dataclass(frozen=True)
class Shortfall:
    """Doses of a day's need at a site that nothing could cover."""

    site_id: str
    product_code: str
    day: date
    kind: Kind
    doses: int


@dataclass(frozen=True)
class Allocation:
    """The plan: proposed shipments, per-product balances, and what stayed unmet."""

    lines: list[ProposedShipment]
    balances: list[ProductBalance]
    fills: list[Fill]
    unmet: list[Shortfall]
    unrouted: dict[str, int]  # waiting citizens with no free slot in reach, by product

    def booked_share_covered(self) -> float:
        """Booked doses covered over booked doses (1.0 when nothing is booked)."""
        booked = sum(b.booked for b in self.balances)
        covered = sum(b.booked_covered for b in self.balances)
        return covered / booked if booked else 1.0


def usable_on(lot: WarehouseLot, day: date) -> bool:
    """A lot is usable through its expiry date."""
    return lot.expiry_date >= day


def may_hold(site: SiteSupply, lot: WarehouseLot) -> bool:
    """The site's cold chain holds the lot's storage."""
    return lot.storage in site.storages


def _ceil_vials(doses: int, per_vial: int) -> int:
    return -(-doses // per_vial) if doses > 0 else 0


@dataclass
class _Need:
    """One site-product-day's demand of one kind, in doses rounded to whole vials."""

    site: SiteSupply
    product: str
    day: date
    kind: Kind
    raw: int  # citizens
    rounded: int  # doses the day's vials hold
    covered: int = 0  # of `rounded`


def route_waiting(
    data: AllocationInput,
) -> tuple[dict[tuple[str, date, str], int], dict[str, int]]:
    """Waiting citizens seated on free slots of sites in reach; also how many had none."""
    by_municipality: dict[str, list[SiteSupply]] = defaultdict(list)
    by_district: dict[str, list[SiteSupply]] = defaultdict(list)
    for site in sorted(data.sites, key=lambda s: s.site_id):
        by_municipality[site.municipality_code].append(site)
        by_district[site.district_code].append(site)
    free = {k: v for k, v in data.free_slots.items() if v > 0}
    national = _national_doses(data)
    days = [data.start + timedelta(days=d) for d in range(data.days)]
    seated: dict[tuple[str, date, str], int] = defaultdict(int)
    unrouted: dict[str, int] = defaultdict(int)
    for (municipality, wanted), count in sorted(data.waiting.items()):
        if count <= 0:
            continue
        district = _district_of(municipality, data.sites)
        reach = by_municipality.get(municipality) or by_district.get(district or "", [])
        product = wanted if wanted != ANY else _any_product(reach, free, days, national, data)
        left = count
        for day in days:
            for site in reach:
                if left == 0 or product is None:
                    break
                key = (site.site_id, day, product)
                take = min(left, free.get(key, 0))
                if take:
                    free[key] -= take
                    seated[key] += take
                    left -= take
        if left:
            unrouted[product or wanted] += left
    return dict(seated), dict(unrouted)


def _district_of(municipality: str, sites: Sequence[SiteSupply]) -> str | None:
    for site in sites:
        if site.municipality_code == municipality:
            return site.district_code
    known = municipalities().get(municipality)
    return known.district_code if known is not None else None


def _national_doses(data: AllocationInput) -> dict[str, int]:
    doses: dict[str, int] = defaultdict(int)
    for lot in data.lots:
        doses[lot.product_code] += lot.vials * lot.doses_per_vial
    for (_, product), on_hand in data.on_hand.items():
        doses[product] += on_hand
    return doses


def _any_product(
    reach: Sequence[SiteSupply],
    free: Mapping[tuple[str, date, str], int],
    days: Sequence[date],
    national: Mapping[str, int],
    data: AllocationInput,
) -> str | None:
    offered = sorted(
        {p for p in data.products for s in reach for d in days if free.get((s.site_id, d, p), 0)}
    )
    if not offered:
        return None
    return min(offered, key=lambda p: (-national.get(p, 0), p))


def plan(data: AllocationInput) -> Allocation:
    """Propose shipments that cover booked, then waiting demand (see the module doc)."""
    seated, unrouted = route_waiting(data)
    sites = {s.site_id: s for s in data.sites}
    days = [data.start + timedelta(days=d) for d in range(data.days)]
    needs = _needs(data, sites, days, seated)
    pools = {
        key: data.on_hand.get(key, 0) + data.in_transit.get(key, 0)
        for key in {(n.site.site_id, n.product) for n in needs}
    }
    stock = {(lot.location_id, lot.lot_number): lot.vials for lot in data.lots if lot.vials > 0}
    lots_by_product: dict[str, list[WarehouseLot]] = defaultdict(list)
    for lot in sorted(data.lots, key=lambda x: (x.expiry_date, x.location_id, x.lot_number)):
        if lot.vials > 0 and lot.product_code in data.products:
            lots_by_product[lot.product_code].append(lot)
    fills: list[Fill] = []
    for kind in ("booked", "waiting"):
        passing = [n for n in needs if n.kind == kind]
        # Local stock first, each site's earliest day first.
        for need in sorted(passing, key=lambda n: (n.site.site_id, n.product, n.day)):
            key = (need.site.site_id, need.product)
            take = min(pools[key], need.rounded)
            pools[key] -= take
            need.covered += take
        order = sorted(
            passing,
            key=lambda n: (
                n.day,
                (n.site.site_id, n.product) not in data.alerts,
                n.site.site_id,
                n.product,
            ),
        )
        for need in order:
            # Doses beyond the need (local stock was not whole vials) stay at the site.
            pools[(need.site.site_id, need.product)] += _fill(
                need, lots_by_product[need.product], stock, fills
            )
    lines = _lines(data, fills, needs, stock)
    balances = _balances(data, needs, lines, unrouted, days)
    unmet = [
        Shortfall(n.site.site_id, n.product, n.day, n.kind, n.rounded - n.covered)
        for n in needs
        if n.covered < n.rounded
    ]
    return Allocation(lines=lines, balances=balances, fills=fills, unmet=unmet, unrouted=unrouted)


def _needs(
    data: AllocationInput,
    sites: Mapping[str, SiteSupply],
    days: Sequence[date],
    seated: Mapping[tuple[str, date, str], int],
) -> list[_Need]:
    needs: list[_Need] = []
    in_horizon = set(days)
    keys = sorted({k for k, v in data.booked.items() if v > 0} | {k for k, v in seated.items()})
    for site_id, day, product in keys:
        site = sites.get(site_id)
        per_vial = data.products.get(product)
        if site is None or per_vial is None or day not in in_horizon:
            continue
        booked = max(data.booked.get((site_id, day, product), 0), 0)
        waiting = seated.get((site_id, day, product), 0)
        booked_rounded = _ceil_vials(booked, per_vial) * per_vial
        day_rounded = _ceil_vials(booked + waiting, per_vial) * per_vial
        if booked:
            needs.append(_Need(site, product, day, "booked", booked, booked_rounded))
        if waiting:
            needs.append(
                _Need(site, product, day, "waiting", waiting, day_rounded - booked_rounded)
            )
    return needs


def _source_rank(site: SiteSupply, lot: WarehouseLot) -> tuple[int, str]:
    near = lot.location_id == district_warehouse(site.district_code)
    return (0 if near else 1, lot.location_id)


def _fill(
    need: _Need,
    lots: list[WarehouseLot],
    stock: dict[tuple[str, str], int],
    fills: list[Fill],
) -> int:
    """Ship whole vials for a need's shortfall; returns the doses shipped beyond it."""
    short = need.rounded - need.covered
    if short <= 0:
        return 0
    candidates = [
        lot
        for lot in lots
        if stock.get((lot.location_id, lot.lot_number), 0) > 0
        and usable_on(lot, need.day)
        and may_hold(need.site, lot)
    ]
    candidates.sort(key=lambda lot: (lot.expiry_date, _source_rank(need.site, lot), lot.lot_number))
    shipped = 0
    for lot in candidates:
        if shipped >= short:
            break
        key = (lot.location_id, lot.lot_number)
        vials = min(stock[key], _ceil_vials(short - shipped, lot.doses_per_vial))
        stock[key] -= vials
        shipped += vials * lot.doses_per_vial
        fills.append(
            Fill(
                need.site.site_id,
                need.product,
                need.day,
                need.kind,
                lot.location_id,
                lot.lot_number,
                vials,
            )
        )
    need.covered += min(shipped, short)
    return max(shipped - short, 0)


def _lines(
    data: AllocationInput,
    fills: Iterable[Fill],
    needs: Sequence[_Need],
    left: Mapping[tuple[str, str], int],
) -> list[ProposedShipment]:
    lots = {(lot.location_id, lot.lot_number): lot for lot in data.lots}
    demand: dict[tuple[str, str, Kind], int] = defaultdict(int)
    for need in needs:
        demand[(need.site.site_id, need.product, need.kind)] += need.raw
    grouped: dict[tuple[str, str, str, str], list[Fill]] = defaultdict(list)
    for fill in fills:
        grouped[(fill.product_code, fill.site_id, fill.location_id, fill.lot_number)].append(fill)
    lines: list[ProposedShipment] = []
    for number, (product, site_id, location_id, lot_number) in enumerate(sorted(grouped), 1):
        group = grouped[(product, site_id, location_id, lot_number)]
        lot = lots[(location_id, lot_number)]
        vials = sum(f.vials for f in group)
        for_booked = sum(f.vials for f in group if f.kind == "booked") * lot.doses_per_vial
        lines.append(
            ProposedShipment(
                line=number,
                lot_number=lot_number,
                product_code=product,
                from_location=location_id,
                to_location=site_id,
                vials=vials,
                doses=vials * lot.doses_per_vial,
                expiry_date=lot.expiry_date,
                why=LineReasons(
                    booked=demand[(site_id, product, "booked")],
                    waiting=demand[(site_id, product, "waiting")],
                    on_hand=data.on_hand.get((site_id, product), 0),
                    in_transit=data.in_transit.get((site_id, product), 0),
                    for_booked=for_booked,
                    for_waiting=vials * lot.doses_per_vial - for_booked,
                    first_use=min(f.day for f in group),
                    last_use=max(f.day for f in group),
                    leaves_behind=left.get((location_id, lot_number), 0),
                    alert=(site_id, product) in data.alerts,
                ),
            )
        )
    return lines


def _balances(
    data: AllocationInput,
    needs: Sequence[_Need],
    lines: Sequence[ProposedShipment],
    unrouted: Mapping[str, int],
    days: Sequence[date],
) -> list[ProductBalance]:
    end = days[-1] if days else data.start
    citizens: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (_, product, _), (booked, waiting) in _days(needs).items():
        figures = citizens[product]
        covered_booked = min(booked.raw, booked.covered) if booked else 0
        # The rest of a booked day's last vial covers waiting citizens of that day too.
        spare = booked.covered - covered_booked if booked else 0
        figures[0] += booked.raw if booked else 0
        figures[1] += covered_booked
        figures[2] += waiting.raw if waiting else 0
        figures[3] += min(waiting.raw, spare + waiting.covered) if waiting else 0
    balances: list[ProductBalance] = []
    for product in sorted(data.products):
        booked_doses, booked_covered, waiting_doses, waiting_covered = citizens[product]
        balances.append(
            ProductBalance(
                product_code=product,
                booked=booked_doses,
                booked_covered=booked_covered,
                waiting=waiting_doses,
                waiting_covered=waiting_covered,
                shipped_doses=sum(line.doses for line in lines if line.product_code == product),
                due_from_contracts=sum(
                    d.doses
                    for d in data.due
                    if d.product_code == product and data.start <= d.expected_date <= end
                ),
                unrouted_waiting=unrouted.get(product, 0),
            )
        )
    return balances


def _days(needs: Sequence[_Need]) -> dict[tuple[str, str, date], tuple[_Need | None, _Need | None]]:
    """Each site-product-day's (booked, waiting) needs."""
    days: dict[tuple[str, str, date], tuple[_Need | None, _Need | None]] = {}
    for need in needs:
        key = (need.site.site_id, need.product, need.day)
        booked, waiting = days.get(key, (None, None))
        days[key] = (need, waiting) if need.kind == "booked" else (booked, need)
    return days
