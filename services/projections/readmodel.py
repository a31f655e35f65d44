"""The five reports the API answers, read from one model in one snapshot (Follower.snapshot).

Denominators (domain.py) are the 2022 census (immunreg.reference.geography): districts and
municipalities, and five-year age bands by sex nationally. The census has no
age or sex structure below the national level, so a district's or
municipality's population of one age band (or sex) is *estimated* as its total
times the national share of that band: such rows say `population_estimated`.
Products have no denominator: a product's row gives its share of everyone
vaccinated (with the same dose and filters). Kosovo and Metohija is not in the
2022 census; municipality codes outside the census count under `unknown`.

Anonymous callers get coverage and daily doses with small numbers suppressed
(1-4 people or doses: the count and what is derived from it null, `suppressed`
true) and every other count, totals included, rounded to a multiple of 5
(`rounded_to`), the usual disclosure control for published statistics
(domain.disclosed); public-health staff and admins see exact numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Protocol

from immunreg.eventstore.database import Connection
from immunreg.reference.geography import districts, municipalities
from immunreg.reference.vaccines import vaccine_catalog

from .domain import (
    ALL_MUNICIPALITIES,
    BOOSTER,
    FIRST,
    SERIES,
    UNKNOWN,
    age_band,
    disclosed_with_total,
    district_of,
    group_names,
    location_district,
    per_100k,
    percentage,
    place_population,
    population,
    product_name,
    run_out_day,
)
from .schemas import (
    BookingStats,
    Coverage,
    CoverageFilters,
    CoverageRow,
    DailyDoses,
    DailyRow,
    DoseKind,
    Due,
    GroupBy,
    ModelInfo,
    MunicipalityQueue,
    Position,
    RunOut,
    Safety,
    SafetyRow,
    SiteBookings,
    Stock,
    StockRow,
    SupplyDemand,
    SupplyRow,
    WastageRow,
)

DAILY_KINDS = (FIRST, SERIES, BOOSTER)
_KIND_COLUMN = {"1": "dose1", "complete": "complete", "booster": "booster"}
_GROUP_COLUMN = {
    "district": "district_code",
    "municipality": "municipality_code",
    "age_band": "age_band",
    "sex": "sex",
}


async def fresh_as_of(conn: Connection) -> datetime | None:
    """recorded_at of the newest event the model has applied."""
    newest: datetime | None = await conn.fetchval("SELECT newest_recorded_at FROM model_state")
    return newest


# --- coverage --------------------------------------------------------------------------


class PeopleCounter(Protocol):
    async def __call__(
        self,
        conn: Connection,
        *,
        group_by: GroupBy,
        dose: DoseKind,
        on: date,
        filters: CoverageFilters,
    ) -> dict[str, int]: ...


def _coverage_filters(filters: CoverageFilters, product_column: str) -> list[tuple[str, str]]:
    return [
        (col, value)
        for value, col in (
            (filters.product, product_column),
            (filters.age_band, "age_band"),
            (filters.sex, "sex"),
            (filters.district, "district_code"),
        )
        if value is not None
    ]


async def people_with_dose(
    conn: Connection, *, group_by: GroupBy, dose: DoseKind, on: date, filters: CoverageFilters
) -> dict[str, int]:
    """People with `dose` by the end of `on` per group, from the pre-aggregated cells:
    the running sums at the latest week start on or before `on`, plus the days from it
    to `on` (model.sql, coverage_*). Reads at most a week of daily cells."""
    column = "product_code" if group_by == "product" else _GROUP_COLUMN[group_by]
    args: list[object] = [dose, on, ALL_MUNICIPALITIES]
    # Municipalities' cells when grouped by them, else the districts' own (a seventh).
    where = [
        " AND municipality_code <> $3"
        if group_by == "municipality"
        else " AND municipality_code = $3"
    ]
    for col, value in _coverage_filters(filters, "product_code"):
        args.append(value)
        where.append(f" AND {col} = ${len(args)}")
    cond = "".join(where)
    week = "(SELECT max(week) FROM coverage_weeks WHERE kind = $1 AND week <= $2)"
    rows = await conn.fetch(
        f"SELECT key, sum(people) AS people FROM ("
        f"SELECT {column} AS key, people FROM coverage_before "
        f"WHERE kind = $1 AND week = {week}{cond} "
        f"UNION ALL SELECT {column}, people FROM coverage_daily "
        f"WHERE kind = $1 AND day <= $2 AND day >= coalesce({week}, '-infinity'::date){cond}"
        f") AS cells GROUP BY key",
        *args,
    )
    return {r["key"]: int(r["people"]) for r in rows if r["people"]}


async def people_with_dose_by_scan(
    conn: Connection, *, group_by: GroupBy, dose: DoseKind, on: date, filters: CoverageFilters
) -> dict[str, int]:
    """The same count by scanning `citizens`: what coverage served before the
    pre-aggregated cells, kept as the reference the property test and the benchmark
    compare them with (never on the serving path: it reads every vaccinated citizen)."""
    kind = _KIND_COLUMN[dose]
    column = f"{kind}_product" if group_by == "product" else _GROUP_COLUMN[group_by]
    where = [f"{kind}_date <= $1"]
    args: list[object] = [on]
    for col, value in _coverage_filters(filters, f"{kind}_product"):
        args.append(value)
        where.append(f"{col} = ${len(args)}")
    rows = await conn.fetch(
        f"SELECT coalesce({column}, '{UNKNOWN}') AS key, count(*) AS people FROM citizens "
        f"WHERE {' AND '.join(where)} GROUP BY 1",
        *args,
    )
    return {r["key"]: int(r["people"]) for r in rows}


async def coverage(
    conn: Connection,
    *,
    group_by: GroupBy,
    dose: DoseKind,
    on: date,
    filters: CoverageFilters,
    threshold: int,
    count_people: PeopleCounter = people_with_dose,
) -> Coverage:
    """People with `dose` by the end of day `on`, by `group_by`, against the census,
    disclosed at `threshold` (domain.disclosed). `count_people` is the pre-aggregated
    model; the scan (people_with_dose_by_scan) is there for tests and the benchmark."""
    counted = await count_people(conn, group_by=group_by, dose=dose, on=on, filters=filters)
    names = group_names(group_by)
    if group_by == "municipality" and filters.district is not None:
        names = {
            code: m.name
            for code, m in municipalities().items()
            if m.district_code == filters.district
        }
    keys = list(names) + sorted(k for k in counted if k not in names)
    shown_people, total_people = disclosed_with_total(
        [counted.get(key, 0) for key in keys], threshold
    )
    band = age_band(filters.age_band)
    district_population = (
        districts()[filters.district].population if filters.district in districts() else None
    )

    def row(key: str, name: str, shown: int | None) -> CoverageRow:
        if group_by == "product":
            pop, estimated = None, False
        elif group_by in ("district", "municipality"):
            geo = place_population(group_by, key)
            pop, estimated = (
                population(geo=geo, band=band, sex=filters.sex)
                if geo is not None
                else (None, False)
            )
        elif group_by == "age_band":
            pop, estimated = population(
                geo=district_population, band=age_band(key), sex=filters.sex
            )
            if age_band(key) is None:
                pop, estimated = None, False
        else:
            pop, estimated = population(geo=district_population, band=band, sex=key)
        return CoverageRow(
            key=key,
            name=name,
            people=shown,
            population=pop,
            coverage_pct=percentage(shown, pop),
            share_of_vaccinated_pct=percentage(shown, total_people)
            if group_by == "product"
            else None,
            population_estimated=estimated,
            suppressed=shown is None,
        )

    result = [
        row(
            key,
            names.get(key) or (product_name(key) if group_by == "product" else key),
            shown,
        )
        for key, shown in zip(keys, shown_people, strict=True)
    ]
    if group_by == "product":
        result.sort(key=lambda r: (-(r.people or 0), r.key))
    total_population, total_estimated = population(
        geo=district_population, band=band, sex=filters.sex
    )
    total = CoverageRow(
        key="total",
        name=districts()[filters.district].name if filters.district else "Serbia",
        people=total_people,
        population=total_population,
        coverage_pct=percentage(total_people, total_population),
        population_estimated=total_estimated,
        suppressed=total_people is None,
    )
    return Coverage(
        date=on,
        dose=dose,
        group_by=group_by,
        filters=filters,
        fresh_as_of=await fresh_as_of(conn),
        rows=result,
        total=total,
        rounded_to=threshold,
    )


# --- daily doses -----------------------------------------------------------------------


async def default_range(conn: Connection, to: date | None, today: date) -> tuple[date, date]:
    """From the first day with doses (at most a year back) to today (or `to`)."""
    end = to or today
    first: date | None = await conn.fetchval("SELECT min(day) FROM daily_doses")
    start = (
        max(first, end - timedelta(days=364))
        if first and first <= end
        else end - timedelta(days=29)
    )
    return start, end


async def daily_doses(
    conn: Connection,
    *,
    start: date,
    end: date,
    product: str | None,
    age_band: str | None,
    site_id: str | None,
    threshold: int,
) -> DailyDoses:
    """Doses per day with their kind, zero days included, and the 7-day average,
    disclosed at `threshold` (domain.disclosed_with_total): the average and the total
    are of the published day counts (a withheld day counts as 0), so they reveal
    nothing the days do not."""
    window_start = start - timedelta(days=6)
    args: list[object] = [window_start, end]
    where = ["day BETWEEN $1 AND $2"]
    if product is not None:
        args.append(product)
        where.append(f"product_code = ${len(args)}")
    by_kind = site_id is None
    if site_id is not None:
        args.append(site_id)
        where.append(f"site_id = ${len(args)}")
        sql = (
            "SELECT day, 'all' AS kind, sum(doses) AS doses FROM site_daily_doses "
            f"WHERE {' AND '.join(where)} GROUP BY day"
        )
    else:
        if age_band is not None:
            args.append(age_band)
            where.append(f"age_band = ${len(args)}")
        sql = (
            "SELECT day, kind, sum(doses) AS doses FROM daily_doses "
            f"WHERE {' AND '.join(where)} GROUP BY day, kind"
        )
    per_day: dict[date, dict[str, int]] = {}
    for r in await conn.fetch(sql, *args):
        per_day.setdefault(r["day"], {})[r["kind"]] = int(r["doses"])
    # A day's doses are the total of its kinds (first, series, booster), published
    # together; with site_id the day has no kinds, so it is its own only cell.
    shown: dict[date, tuple[list[int | None], int | None]] = {}
    for day, kinds in per_day.items():
        cells = [kinds.get(k, 0) for k in DAILY_KINDS] if by_kind else [sum(kinds.values())]
        shown[day] = disclosed_with_total(cells, threshold)

    def doses_on(day: date) -> int | None:
        return shown[day][1] if day in shown else 0

    rows = []
    day = start
    while day <= end:
        kinds_shown = shown[day][0] if day in shown else [0, 0, 0]
        doses = doses_on(day)
        window = sum(doses_on(day - timedelta(days=i)) or 0 for i in range(7))
        first, series, booster = kinds_shown if by_kind else (None, None, None)
        rows.append(
            DailyRow(
                day=day,
                doses=doses,
                first=first,
                series=series,
                booster=booster,
                avg_7d=round(window / 7, 2),
                suppressed=doses is None,
            )
        )
        day += timedelta(days=1)
    filters = {
        k: v
        for k, v in (("product", product), ("age_band", age_band), ("site_id", site_id))
        if v is not None
    }
    return DailyDoses(
        from_day=start,
        to_day=end,
        filters=filters,
        fresh_as_of=await fresh_as_of(conn),
        # Of the published days, so that it reveals nothing they do not.
        total=sum(r.doses or 0 for r in rows),
        rows=rows,
        rounded_to=threshold,
    )


# --- stock -----------------------------------------------------------------------------


async def stock(
    conn: Connection, *, on: date, location_id: str | None, product: str | None
) -> Stock:
    """Stock levels with days of supply, and wastage per product up to `on`."""
    args: list[object] = [on]
    where = ["true"]
    if location_id is not None:
        args.append(location_id)
        where.append(f"s.location_id = ${len(args)}")
    if product is not None:
        args.append(product)
        where.append(f"s.product_code = ${len(args)}")
    rows = await conn.fetch(
        f"""
        SELECT s.location_id, s.product_code, s.doses_available, s.earliest_expiry, s.as_of,
               coalesce(d.doses, 0) AS doses_7d
        FROM stock_levels s
        LEFT JOIN (SELECT site_id, product_code, sum(doses) AS doses FROM site_daily_doses
                   WHERE day BETWEEN $1::date - 6 AND $1 GROUP BY site_id, product_code) d
               ON d.site_id = s.location_id AND d.product_code = s.product_code
        WHERE {" AND ".join(where)}
        ORDER BY s.location_id, s.product_code
        """,
        *args,
    )
    locations = []
    for r in rows:
        avg = int(r["doses_7d"]) / 7
        locations.append(
            StockRow(
                location_id=r["location_id"],
                product_code=r["product_code"],
                product_name=product_name(r["product_code"]),
                doses_available=r["doses_available"],
                earliest_expiry=r["earliest_expiry"],
                doses_last_7d=int(r["doses_7d"]),
                avg_daily_doses_7d=round(avg, 2),
                days_of_supply=round(r["doses_available"] / avg, 1) if avg > 0 else None,
                as_of=r["as_of"],
            )
        )
    used = {
        r["product_code"]: int(r["doses"])
        for r in await conn.fetch(
            "SELECT product_code, sum(doses) AS doses FROM daily_doses WHERE day <= $1 "
            "GROUP BY product_code",
            on,
        )
    }
    wasted = {
        r["product_code"]: int(r["doses"])
        for r in await conn.fetch(
            "SELECT product_code, sum(doses) AS doses FROM waste_daily WHERE day <= $1 "
            "GROUP BY product_code",
            on,
        )
    }
    wastage = [
        WastageRow(
            product_code=code,
            product_name=product_name(code),
            administered=used.get(code, 0),
            wasted=wasted.get(code, 0),
            wastage_rate_pct=percentage(
                wasted.get(code, 0), used.get(code, 0) + wasted.get(code, 0)
            ),
        )
        for code in sorted(set(used) | set(wasted))
        if product is None or code == product
    ]
    return Stock(date=on, fresh_as_of=await fresh_as_of(conn), locations=locations, wastage=wastage)


# --- supply against demand ------------------------------------------------------------


async def supply_demand(conn: Connection, *, on: date) -> SupplyDemand:
    """Per district and product: doses on hand, on the road, booked from `on` and waiting;
    what contracts still owe; and each site whose bookings outrun its doses, and when."""
    catalog = vaccine_catalog()
    sites = {
        r["site_id"]: r["municipality_code"]
        for r in await conn.fetch("SELECT site_id, municipality_code FROM sites")
    }
    doses: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # on hand, coming
    for r in await conn.fetch(
        "SELECT location_id, product_code, doses_available FROM stock_levels"
    ):
        doses[(r["location_id"], r["product_code"])][0] += r["doses_available"]
    for r in await conn.fetch(
        "SELECT to_location, product_code, sum(vials) AS vials FROM shipments "
        "WHERE NOT received GROUP BY to_location, product_code"
    ):
        per_vial = catalog[r["product_code"]].doses_per_vial if r["product_code"] in catalog else 1
        doses[(r["to_location"], r["product_code"])][1] += int(r["vials"]) * per_vial
    booked_days: dict[tuple[str, str], list[tuple[date, int]]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT site_id, product_code, day, booked - attended - missed AS open "
        "FROM booking_days WHERE day >= $1 AND booked - attended - missed > 0",
        on,
    ):
        booked_days[(r["site_id"], r["product_code"])].append((r["day"], int(r["open"])))
    waiting: dict[str, int] = defaultdict(int)
    for r in await conn.fetch("SELECT municipality_code, waiting FROM municipality_queue"):
        district = district_of(r["municipality_code"])
        if district is not None:
            waiting[district] += r["waiting"]
    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    national: dict[str, int] = defaultdict(int)
    for (location, product), (on_hand, coming) in doses.items():
        district = location_district(location, sites.get(location))
        if district is None:
            national[product] += on_hand
            continue
        rows[(district, product)][0] += on_hand
        rows[(district, product)][1] += coming
    running_out: list[RunOut] = []
    for (site_id, product), days in sorted(booked_days.items()):
        district = location_district(site_id, sites.get(site_id))
        if district is not None:
            rows[(district, product)][2] += sum(n for _, n in days)
        held = sum(doses.get((site_id, product), [0, 0]))
        runs_out_on = run_out_day(held, days)
        if runs_out_on is not None:
            running_out.append(
                RunOut(
                    site_id=site_id,
                    district_code=district,
                    product_code=product,
                    doses=held,
                    booked=sum(n for _, n in days),
                    runs_out_on=runs_out_on,
                )
            )
    names = {code: d.name for code, d in districts().items()}
    contracted = {
        r["product_code"]: int(r["total"])
        for r in await conn.fetch(
            "SELECT product_code, sum(total_doses) AS total FROM contracts GROUP BY product_code"
        )
    }
    delivered = {
        r["product_code"]: int(r["doses"])
        for r in await conn.fetch(
            "SELECT product_code, sum(doses) AS doses FROM contract_deliveries "
            "GROUP BY product_code"
        )
    }
    return SupplyDemand(
        date=on,
        fresh_as_of=await fresh_as_of(conn),
        districts=[
            SupplyRow(
                district_code=district,
                district_name=names.get(district, district),
                product_code=product,
                product_name=product_name(product),
                on_hand=on_hand,
                in_transit=coming,
                booked=booked,
                waiting=waiting.get(district, 0),
            )
            for (district, product), (on_hand, coming, booked) in sorted(rows.items())
        ],
        national_warehouse=dict(sorted(national.items())),
        due_from_contracts=[
            Due(
                product_code=code,
                product_name=product_name(code),
                contracted=total,
                delivered=delivered.get(code, 0),
                due=max(total - delivered.get(code, 0), 0),
            )
            for code, total in sorted(contracted.items())
        ],
        running_out=sorted(running_out, key=lambda r: (r.runs_out_on, r.site_id, r.product_code)),
    )


# --- bookings --------------------------------------------------------------------------


async def booking_stats(conn: Connection, *, start: date, end: date) -> BookingStats:
    """booked / capacity and missed / (attended + missed) per site over [start, end]."""
    capacity = {
        r["site_id"]: r
        for r in await conn.fetch(
            """
            SELECT s.site_id, s.name, s.municipality_code,
                   sum(coalesce(o.capacity_total, s.capacity_total)) AS capacity
            FROM sites s
            CROSS JOIN generate_series($1::date, $2::date, interval '1 day') AS d(day)
            LEFT JOIN site_day_capacity o ON o.site_id = s.site_id AND o.day = d.day::date
            GROUP BY s.site_id, s.name, s.municipality_code
            """,
            start,
            end,
        )
    }
    used = {
        r["site_id"]: r
        for r in await conn.fetch(
            "SELECT site_id, sum(booked) AS booked, sum(attended) AS attended, "
            "sum(missed) AS missed FROM booking_days WHERE day BETWEEN $1 AND $2 "
            "GROUP BY site_id",
            start,
            end,
        )
    }
    sites = []
    for site_id in sorted(set(capacity) | set(used)):
        cap = capacity.get(site_id)
        use = used.get(site_id)
        booked = int(use["booked"]) if use else 0
        attended = int(use["attended"]) if use else 0
        missed = int(use["missed"]) if use else 0
        cap_total = int(cap["capacity"]) if cap else None
        sites.append(
            SiteBookings(
                site_id=site_id,
                name=cap["name"] if cap else None,
                municipality_code=cap["municipality_code"] if cap else None,
                capacity=cap_total,
                booked=booked,
                fill_rate_pct=percentage(booked, cap_total),
                attended=attended,
                missed=missed,
                no_show_rate_pct=percentage(missed, attended + missed),
            )
        )
    known = municipalities()
    queue = [
        MunicipalityQueue(
            municipality_code=r["municipality_code"],
            name=known[r["municipality_code"]].name
            if r["municipality_code"] in known
            else r["municipality_code"],
            waiting=r["waiting"],
            booked=r["booked"],
        )
        for r in await conn.fetch(
            "SELECT municipality_code, waiting, booked FROM municipality_queue "
            "ORDER BY municipality_code"
        )
    ]
    capacity_sum = sum(s.capacity or 0 for s in sites)
    booked_sum = sum(s.booked for s in sites)
    attended_sum = sum(s.attended for s in sites)
    missed_sum = sum(s.missed for s in sites)
    totals: dict[str, int | float | None] = {
        "capacity": capacity_sum,
        "booked": booked_sum,
        "fill_rate_pct": percentage(booked_sum, capacity_sum),
        "attended": attended_sum,
        "missed": missed_sum,
        "no_show_rate_pct": percentage(missed_sum, attended_sum + missed_sum),
        "waiting": sum(q.waiting for q in queue),
        "appointments_booked": sum(q.booked for q in queue),
    }
    return BookingStats(
        from_day=start,
        to_day=end,
        fresh_as_of=await fresh_as_of(conn),
        sites=sites,
        municipalities=queue,
        totals=totals,
    )


# --- safety ----------------------------------------------------------------------------


async def safety(conn: Connection) -> Safety:
    """Reports and serious reports per 100,000 doses, by product."""
    doses = {
        r["product_code"]: int(r["doses"])
        for r in await conn.fetch(
            "SELECT product_code, sum(doses) AS doses FROM daily_doses GROUP BY product_code"
        )
    }
    reports = {
        r["product_code"]: (int(r["reports"]), int(r["serious"]))
        for r in await conn.fetch(
            "SELECT product_code, count(*) AS reports, count(*) FILTER (WHERE serious) AS serious "
            "FROM adverse_events GROUP BY product_code"
        )
    }
    products = []
    for code in sorted(set(doses) | set(reports)):
        given = doses.get(code, 0)
        all_reports, serious = reports.get(code, (0, 0))
        products.append(
            SafetyRow(
                product_code=code,
                product_name=product_name(code),
                doses=given,
                reports=all_reports,
                serious=serious,
                reports_per_100k=per_100k(all_reports, given),
                serious_per_100k=per_100k(serious, given),
            )
        )
    return Safety(fresh_as_of=await fresh_as_of(conn), products=products)


# --- the model itself ------------------------------------------------------------------


async def model_info(
    conn: Connection, schema: str, models: Iterable[Mapping[str, object]]
) -> ModelInfo:
    """The active model's state and the history of models."""
    state = await conn.fetchrow("SELECT newest_recorded_at, events_applied FROM model_state")
    positions = [
        Position(topic=r["topic"], partition=r["partition"], next_offset=r["next_offset"])
        for r in await conn.fetch(
            "SELECT topic, partition, next_offset FROM consumer_positions "
            "WHERE group_id = $1 ORDER BY topic, partition",
            schema,
        )
    ]
    return ModelInfo(
        schema=schema,
        fresh_as_of=state["newest_recorded_at"] if state else None,
        events_applied=int(state["events_applied"]) if state else 0,
        positions=positions,
        models=[
            {
                k: (v.isoformat() if isinstance(v, datetime) else str(v) if v is not None else None)
                for k, v in m.items()
            }
            for m in models
        ],
    )
