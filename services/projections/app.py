"""Projections: coverage statistics and operational read models, and a dashboard (port 8086).

Consumes every context's topic into a read model (models.py: one schema per
model, the active one named in `read_models`; `immunreg projections rebuild`
builds a new one from offset 0 and swaps it in while this service keeps
answering). Every answer carries `fresh_as_of`: the `recorded_at` of the newest
event the model has applied.

Who may read what:
- coverage and daily doses: anyone (aggregate statistics, as a public-health
  institute publishes them); anonymous callers see counts below the small-number
  threshold (`SMALL_NUMBER_THRESHOLD`, default 5) withheld and every other count,
  totals included, rounded to a multiple of it, and are rate limited per address
  (`RATE_LIMIT_PER_MINUTE`, `RATE_LIMIT_BURST`); `public_health` and `admin` see
  exact numbers;
- stock and wastage: `public_health`, `logistics`, `admin`;
- bookings, safety and the model's state: `public_health`, `admin`;
- the dashboard page (`GET /`): anyone; its operational tables ask for a token.

CSV: `Accept: text/csv` or `format=csv` on every statistics route. The first
line is a comment with the answer's metadata, including `fresh_as_of`
(`# fresh_as_of=...`; pandas: `read_csv(..., comment="#")`), and the
`Fresh-As-Of` response header carries it too.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from immunreg.config import positive_number, setting
from immunreg.contracts.topics import dlq_topic
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, background_task
from immunreg.http.auth import Role, current_principal
from immunreg.http.health import Health
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.openapi import Media
from immunreg.http.problems import FieldError, Problem
from immunreg.messaging.topics import ensure_topics
from immunreg.paths import REPO_ROOT
from immunreg.reference.geography import districts
from immunreg.service import Service

from . import readmodel
from .cli import add_commands
from .dashboard import render_dashboard
from .demo import load as load_demo
from .domain import EXACT_THRESHOLD, SUPPRESS_BELOW, age_band_refusal, period_refusal, today
from .follower import Follower
from .geo import district_map
from .handlers import Sources
from .models import CONTROL_SQL
from .schemas import (
    BookingStats,
    Coverage,
    CoverageFilters,
    CoverageQuery,
    CoverageRow,
    DailyDoses,
    DailyQuery,
    DailyRow,
    Format,
    FormatQuery,
    ModelInfo,
    PeriodQuery,
    Safety,
    SafetyRow,
    SiteBookings,
    Stock,
    StockQuery,
    StockRow,
    SupplyDemand,
    SupplyRow,
)

FOLLOWER_KEY = web.AppKey("projections_follower", Follower)
PAGE_KEY = web.AppKey("projections_dashboard", bytes)
THRESHOLD_KEY = web.AppKey("projections_small_number_threshold", int)

EXACT = {Role.PUBLIC_HEALTH, Role.ADMIN}
STOCK_READERS = {Role.PUBLIC_HEALTH, Role.LOGISTICS, Role.ADMIN}
STATISTICIANS = {Role.PUBLIC_HEALTH, Role.ADMIN}

DEFAULT_GEOJSON = REPO_ROOT.parent / "shared" / "data" / "serbia_districts.geojson"


def option(app: web.Application, name: str, default: str) -> str:
    """A setting: settings.extra[name], else PROJECTIONS_<NAME> or <NAME>, else default."""
    return (
        app[SETTINGS_KEY].extra.get(name.lower()) or setting(name.upper(), "projections") or default
    )


def sources_of(app: web.Application) -> Sources:
    """The topics to read: the published ones, or private ones named by SOURCE_PREFIX."""
    return Sources.prefixed(option(app, "source_prefix", ""))


# --- queries -----------------------------------------------------------------------


def _check_age_band(value: str | None) -> None:
    if (reason := age_band_refusal(value)) is not None:
        raise Problem.unprocessable(errors=[FieldError("query.age_band", reason)])


def _check_period(start: date, end: date, field: str = "query.from") -> None:
    if (reason := period_refusal(start, end)) is not None:
        raise Problem.unprocessable(errors=[FieldError(field, reason)])


# --- answers: JSON or CSV ----------------------------------------------------------


def wants_csv(request: web.Request, format: Format | None) -> bool:
    """`format=csv`, or an Accept header preferring text/csv to JSON."""
    if format is not None:
        return format == "csv"
    accept = request.headers.get("Accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def csv_response(
    rows: Sequence[msgspec.Struct], columns: Sequence[str], meta: dict[str, object]
) -> web.Response:
    """Rows as CSV, after one `# key=value; ...` comment line with the answer's metadata."""
    out = io.StringIO()
    out.write(
        "# " + "; ".join(f"{k}={_cell(v)}" for k, v in meta.items() if v not in (None, {})) + "\n"
    )
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(getattr(row, c)) for c in columns])
    fresh = meta.get("fresh_as_of")
    headers = {"Fresh-As-Of": fresh.isoformat()} if isinstance(fresh, datetime) else {}
    return web.Response(
        text=out.getvalue(), content_type="text/csv", charset="utf-8", headers=headers
    )


def answer(obj: Any) -> web.Response:
    """JSON, with `Fresh-As-Of` as a header too."""
    fresh = getattr(obj, "fresh_as_of", None)
    headers = {"Fresh-As-Of": fresh.isoformat()} if isinstance(fresh, datetime) else None
    return json_response(obj, headers=headers)


def _columns(struct: type[msgspec.Struct]) -> list[str]:
    return list(struct.__struct_fields__)


def _follower(request: web.Request) -> Follower:
    return request.app[FOLLOWER_KEY]


def disclosure_threshold(request: web.Request) -> int:
    """Exact numbers for public-health staff and admins; the small-number threshold
    (domain.disclosed) for everyone else."""
    principal = current_principal(request)
    if principal is not None and principal.role in EXACT:
        return EXACT_THRESHOLD
    return request.app[THRESHOLD_KEY]


api = Api(
    "immunreg projections",
    "1.0.0",
    "Coverage against the 2022 census, daily doses, stock and wastage, bookings and "
    "no-shows, adverse events per 100,000 doses: read models built from every topic. "
    "Every answer says how fresh it is (`fresh_as_of`); statistics are also CSV "
    "(`Accept: text/csv` or `format=csv`).",
)


@api.get(
    "/v1/coverage",
    query=CoverageQuery,
    responses={200: Media({"application/json": Coverage, "text/csv": None}), 422: None},
    summary="Coverage on a date, by district, municipality, age band, sex or product",
    rate_limited=True,
    tags=["coverage"],
)
async def coverage(request: web.Request, query: CoverageQuery) -> web.StreamResponse:
    """People who had dose 1 (`dose=1`), completed the primary series (`complete`) or had a
    booster (`booster`) by the end of `date` (default today, Serbian time), per group, as a
    share of the group's 2022 census population. Filters: product, age_band, sex, district.
    Anonymous callers see counts of 1-4 suppressed and the rest rounded to multiples of 5."""
    _check_age_band(query.age_band)
    if query.district is not None and query.district not in districts():
        raise Problem.unprocessable(
            errors=[FieldError("query.district", "not a district code (RS-00 .. RS-24)")]
        )
    filters = CoverageFilters(
        product=query.product, age_band=query.age_band, sex=query.sex, district=query.district
    )
    async with _follower(request).snapshot() as conn:
        result = await readmodel.coverage(
            conn,
            group_by=query.group_by,
            dose=query.dose,
            on=query.date or today(),
            filters=filters,
            threshold=disclosure_threshold(request),
        )
    if wants_csv(request, query.format):
        meta: dict[str, object] = {
            "coverage": result.group_by,
            "dose": result.dose,
            "date": result.date,
            **msgspec.structs.asdict(filters),
            "rounded_to": result.rounded_to if result.rounded_to > EXACT_THRESHOLD else None,
            "fresh_as_of": result.fresh_as_of,
        }
        return csv_response([*result.rows, result.total], _columns(CoverageRow), meta)
    return answer(result)


@api.get(
    "/v1/doses/daily",
    query=DailyQuery,
    responses={200: Media({"application/json": DailyDoses, "text/csv": None}), 422: None},
    summary="Doses per day and the 7-day average",
    rate_limited=True,
    tags=["doses"],
)
async def doses_daily(request: web.Request, query: DailyQuery) -> web.StreamResponse:
    """Doses given per day (first, later doses of the series, boosters), zero days included,
    with the average of the 7 days ending each day. Default: from the first day with doses
    (at most a year back) to today. Filters: product, age_band (age at the dose), site_id.
    Anonymous callers see counts of 1-4 suppressed and the rest rounded to multiples of 5."""
    _check_age_band(query.age_band)
    if query.site_id is not None and query.age_band is not None:
        raise Problem.unprocessable(
            errors=[FieldError("query.age_band", "cannot be combined with site_id")]
        )
    async with _follower(request).snapshot() as conn:
        start, end = await readmodel.default_range(conn, query.to_day, today())
        start = query.from_day or start
        _check_period(start, end)
        result = await readmodel.daily_doses(
            conn,
            start=start,
            end=end,
            product=query.product,
            age_band=query.age_band,
            site_id=query.site_id,
            threshold=disclosure_threshold(request),
        )
    if wants_csv(request, query.format):
        meta: dict[str, object] = {
            "daily_doses": "",
            "from": result.from_day,
            "to": result.to_day,
            **result.filters,
            "rounded_to": result.rounded_to if result.rounded_to > EXACT_THRESHOLD else None,
            "fresh_as_of": result.fresh_as_of,
        }
        return csv_response(result.rows, _columns(DailyRow), meta)
    return answer(result)


@api.get(
    "/v1/stock",
    query=StockQuery,
    responses={200: Media({"application/json": Stock, "text/csv": None})},
    roles=STOCK_READERS,
    summary="Stock on hand and days of supply per location and product; wastage",
    tags=["stock"],
)
async def stock(request: web.Request, query: StockQuery) -> web.StreamResponse:
    """Usable doses per location and product (the latest StockLevelChanged), days of supply
    at the average daily doses of the 7 days ending `date` (default today), and wastage per
    product: wasted / (administered + wasted), up to `date`."""
    async with _follower(request).snapshot() as conn:
        result = await readmodel.stock(
            conn, on=query.date or today(), location_id=query.location_id, product=query.product
        )
    if wants_csv(request, query.format):
        meta: dict[str, object] = {
            "stock": "",
            "date": result.date,
            "fresh_as_of": result.fresh_as_of,
        }
        return csv_response(result.locations, _columns(StockRow), meta)
    return answer(result)


@api.get(
    "/v1/supply-demand",
    query=FormatQuery,
    responses={200: Media({"application/json": SupplyDemand, "text/csv": None})},
    roles=STOCK_READERS,
    summary="Supply against demand per district and product; sites about to run out",
    tags=["stock"],
)
async def supply_demand(request: web.Request, query: FormatQuery) -> web.StreamResponse:
    """Per district and product: doses on hand at its sites and warehouse, on the road to
    them, booked from today; citizens waiting there (for any product); doses supply
    contracts still owe (they arrive at the national warehouse); and every site whose
    booked appointments outrun what it holds and is sent, with the day it runs out."""
    async with _follower(request).snapshot() as conn:
        result = await readmodel.supply_demand(conn, on=today())
    if wants_csv(request, query.format):
        meta: dict[str, object] = {"supply_demand": "", "date": result.date}
        return csv_response(result.districts, _columns(SupplyRow), meta)
    return answer(result)


@api.get(
    "/v1/bookings/stats",
    query=PeriodQuery,
    responses={200: Media({"application/json": BookingStats, "text/csv": None}), 422: None},
    roles=STATISTICIANS,
    summary="Booking fill rate and no-show rate per site; queue per municipality",
    tags=["bookings"],
)
async def booking_stats(request: web.Request, query: PeriodQuery) -> web.StreamResponse:
    """Per site over [from, to] (default: the last 7 days and the next 7): capacity (the
    site's default, or the day's override; 0 when closed), slots booked, fill rate, attended,
    missed and no-show rate. Per municipality, now: registrations waiting (no dose, no
    appointment) and appointments booked."""
    now = today()
    start = query.from_day or now - timedelta(days=6)
    end = query.to_day or now + timedelta(days=7)
    _check_period(start, end)
    async with _follower(request).snapshot() as conn:
        result = await readmodel.booking_stats(conn, start=start, end=end)
    if wants_csv(request, query.format):
        meta: dict[str, object] = {
            "booking_stats": "",
            "from": result.from_day,
            "to": result.to_day,
            "fresh_as_of": result.fresh_as_of,
        }
        return csv_response(result.sites, _columns(SiteBookings), meta)
    return answer(result)


@api.get(
    "/v1/safety",
    query=FormatQuery,
    responses={200: Media({"application/json": Safety, "text/csv": None})},
    roles=STATISTICIANS,
    summary="Adverse events following immunization per 100,000 doses, by product",
    tags=["safety"],
)
async def safety(request: web.Request, query: FormatQuery) -> web.StreamResponse:
    """All reports and serious reports per 100,000 doses recorded (and not voided)."""
    async with _follower(request).snapshot() as conn:
        result = await readmodel.safety(conn)
    if wants_csv(request, query.format):
        meta: dict[str, object] = {"safety": "", "fresh_as_of": result.fresh_as_of}
        return csv_response(result.products, _columns(SafetyRow), meta)
    return answer(result)


@api.get(
    "/v1/model",
    responses={200: ModelInfo},
    roles=STATISTICIANS,
    summary="The read model answering now",
    tags=["model"],
)
async def model(request: web.Request) -> web.StreamResponse:
    """Its schema, events applied, freshness, positions per partition, and every model
    built (building, active, retired, dropped)."""
    follower = _follower(request)
    models = await request.app[POOL_KEY].fetch(
        "SELECT schema_name, status, created_at, activated_at, retired_at FROM read_models "
        "ORDER BY created_at"
    )
    async with follower.snapshot() as conn:
        assert follower.current is not None
        info = await readmodel.model_info(conn, follower.current.schema, [dict(m) for m in models])
    return answer(info)


async def dashboard(request: web.Request) -> web.StreamResponse:
    """The dashboard page: self-contained HTML, data fetched from this API."""
    return web.Response(
        body=request.app[PAGE_KEY],
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP},
    )


# Everything the page needs is inline; it talks to this origin only.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)


# --- the service -------------------------------------------------------------------


async def _follow_active_model(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    sources = sources_of(app)
    topics = sources.topics()
    await ensure_topics(
        settings.kafka_bootstrap, [*topics, *map(dlq_topic, topics)], settings.kafka_partitions
    )
    follower = Follower(
        dsn=settings.database_url,
        bootstrap=settings.kafka_bootstrap,
        control_pool=app[POOL_KEY],
        control=settings.db_schema,
        sources=sources,
        metrics=app[METRICS_KEY],
        interval=float(option(app, "follow_interval", "1.0")),
        batch_size=int(option(app, "consumer_batch", "2000")),
        max_attempts=settings.consumer_max_attempts,
        backoff=settings.consumer_backoff,
    )
    await follower.follow()
    app[FOLLOWER_KEY] = follower
    try:
        async with background_task(follower.run()):
            yield
    finally:
        await follower.close()


async def _small_number_threshold(app: web.Application) -> AsyncIterator[None]:
    raw = option(app, "small_number_threshold", str(SUPPRESS_BELOW))
    app[THRESHOLD_KEY] = positive_number("SMALL_NUMBER_THRESHOLD", raw, int)
    yield


async def _dashboard_page(app: web.Application) -> AsyncIterator[None]:
    geojson = Path(option(app, "geojson", str(DEFAULT_GEOJSON)))
    app[PAGE_KEY] = render_dashboard(district_map(geojson))
    yield


def build_service() -> Service:
    """The projections Service (reads come from the model the follower holds)."""
    return Service(
        name="projections",
        api=api,
        schema_files=[CONTROL_SQL],
        resources=(_small_number_threshold, _follow_active_model, _dashboard_page),
        extra_routes=[web.get("/", dashboard, name="dashboard")],
        readiness={"read_model": _following},
        commands=add_commands,
        demo=load_demo,
    )


async def _following(app: web.Application) -> Health:
    """The live read model is attached and its consumer has joined its group.

    Once it has joined, losing the group (Kafka down, a rebalance) only degrades.
    """
    follower = app.get(FOLLOWER_KEY)
    if follower is None or follower.current is None:
        return Health.FAILED
    if follower.ready():
        return Health.OK
    return Health.DEGRADED if follower.current.consumer.has_joined else Health.FAILED


service = build_service()
