"""What the projections API accepts and answers (the OpenAPI document is built from these).

Queries are the filters of each report; answers are what the report says (also
sent as CSV, one row per struct of a list).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

from immunreg.structs import Struct

GroupBy = Literal["district", "municipality", "age_band", "sex", "product"]


DoseKind = Literal["1", "complete", "booster"]


SexFilter = Literal["female", "male", "other"]


Format = Literal["json", "csv"]


# --- queries ----------------------------------------------------------------------


class CoverageQuery(Struct, forbid_unknown_fields=True):
    group_by: GroupBy = "district"
    date: date | None = None
    dose: DoseKind = "1"
    product: str | None = None
    age_band: str | None = None
    sex: SexFilter | None = None
    district: str | None = None
    format: Format | None = None


class DailyQuery(Struct, forbid_unknown_fields=True):
    from_day: date | None = msgspec.field(default=None, name="from")
    to_day: date | None = msgspec.field(default=None, name="to")
    product: str | None = None
    age_band: str | None = None
    site_id: str | None = None
    format: Format | None = None


class StockQuery(Struct, forbid_unknown_fields=True):
    date: date | None = None
    location_id: str | None = None
    product: str | None = None
    format: Format | None = None


class PeriodQuery(Struct, forbid_unknown_fields=True):
    from_day: date | None = msgspec.field(default=None, name="from")
    to_day: date | None = msgspec.field(default=None, name="to")
    format: Format | None = None


class FormatQuery(Struct, forbid_unknown_fields=True):
    format: Format | None = None


# --- answers ----------------------------------------------------------------------


class CoverageFilters(Struct, omit_defaults=True):
    """Which people are counted (and which population they are counted against)."""

    product: str | None = None
    age_band: str | None = None
    sex: SexFilter | None = None
    district: str | None = None


class CoverageRow(Struct):
    """People with the dose by the date in one group, and their share of its population."""

    key: str
    name: str
    people: int | None
    population: int | None = None
    coverage_pct: float | None = None
    share_of_vaccinated_pct: float | None = None
    population_estimated: bool = False
    suppressed: bool = False


class Coverage(Struct):
    """Coverage on a date by one dimension; `total` is everyone counted."""

    date: date
    dose: DoseKind
    group_by: GroupBy
    filters: CoverageFilters
    fresh_as_of: datetime | None
    rows: list[CoverageRow]
    total: CoverageRow
    rounded_to: int = 1
    """Counts are multiples of this (1: exact); counts below it are withheld."""


class DailyRow(Struct):
    """Doses given on one day, and the average of the 7 days ending that day."""

    day: date
    doses: int | None
    first: int | None = None
    series: int | None = None
    booster: int | None = None
    avg_7d: float
    suppressed: bool = False


class DailyDoses(Struct):
    """Daily doses between two days (inclusive)."""

    from_day: date = msgspec.field(name="from")
    to_day: date = msgspec.field(name="to")
    filters: dict[str, str]
    fresh_as_of: datetime | None
    total: int | None
    rows: list[DailyRow]
    rounded_to: int = 1
    """Counts are multiples of this (1: exact); counts below it are withheld."""


class StockRow(Struct):
    """Usable doses of a product at a location, and how long they last at the current pace."""

    location_id: str
    product_code: str
    product_name: str
    doses_available: int
    earliest_expiry: date | None
    doses_last_7d: int
    avg_daily_doses_7d: float
    days_of_supply: float | None
    as_of: datetime


class WastageRow(Struct):
    """Doses wasted (DosesWasted, OpenedVialExpired) against doses used, per product."""

    product_code: str
    product_name: str
    administered: int
    wasted: int
    wastage_rate_pct: float | None


class Stock(Struct):
    """Stock on hand per location and product (days of supply over the 7 days to `date`)."""

    date: date
    fresh_as_of: datetime | None
    locations: list[StockRow]
    wastage: list[WastageRow]


class SiteBookings(Struct):
    """A site's capacity and use over the period."""

    site_id: str
    name: str | None
    municipality_code: str | None
    capacity: int | None
    booked: int
    fill_rate_pct: float | None
    attended: int
    missed: int
    no_show_rate_pct: float | None


class MunicipalityQueue(Struct):
    """Registrations waiting for an appointment, and appointments booked, now."""

    municipality_code: str
    name: str
    waiting: int
    booked: int


class BookingStats(Struct):
    """Fill and no-show rates per site over a period; the queue per municipality now."""

    from_day: date = msgspec.field(name="from")
    to_day: date = msgspec.field(name="to")
    fresh_as_of: datetime | None
    sites: list[SiteBookings]
    municipalities: list[MunicipalityQueue]
    totals: dict[str, int | float | None]


class SafetyRow(Struct):
    """Adverse events following immunization reported per 100,000 doses of a product."""

    product_code: str
    product_name: str
    doses: int
    reports: int
    serious: int
    reports_per_100k: float | None
    serious_per_100k: float | None


class Safety(Struct):
    """AEFI rates by product (doses: every dose recorded and not voided)."""

    fresh_as_of: datetime | None
    products: list[SafetyRow]


class Position(Struct):
    topic: str
    partition: int
    next_offset: int


class ModelInfo(Struct):
    """The model answering now: its schema, how much it has applied, where it stands."""

    schema: str
    fresh_as_of: datetime | None
    events_applied: int
    positions: list[Position]
    models: list[dict[str, str | None]]


class SupplyRow(Struct):
    """Doses of a product in a district against the demand there (waiting: any product)."""

    district_code: str
    district_name: str
    product_code: str
    product_name: str
    on_hand: int
    in_transit: int
    booked: int
    waiting: int


class RunOut(Struct):
    """A site whose booked appointments will use up what it holds and is sent of a product."""

    site_id: str
    district_code: str | None
    product_code: str
    doses: int  # on hand and in transit
    booked: int  # from today on
    runs_out_on: date


class Due(Struct):
    """Doses supply contracts still owe, per product (they arrive at the national level)."""

    product_code: str
    product_name: str
    contracted: int
    delivered: int
    due: int


class SupplyDemand(Struct):
    """Supply against demand per district and product, as of `date`."""

    date: date
    fresh_as_of: datetime | None
    districts: list[SupplyRow]
    national_warehouse: dict[str, int]  # product -> doses on hand
    due_from_contracts: list[Due]
    running_out: list[RunOut]
