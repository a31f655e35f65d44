"""The projector: records what a batch of events changes, then writes it at once.

It is the `BatchApplier` of the projections' reactions. The consumer calls
`begin()`, the handlers `record` each fresh event of a partition batch into a
`Batch` (in memory, no I/O), and `flush(conn)` writes the batch with a few
set-based statements in the consumer's transaction, before the position is
stored. A replay of a million events is then a few statements per thousand
events instead of a few per event.

The write, in order (each step one or two statements, keys sorted so that two
replicas lock rows in the same order):

1. doses and appointments: load the rows the batch touches (FOR UPDATE), fold
   the batch's events onto them (domain.evolve_*), store them; the difference
   between old and new rows becomes +/- deltas of the daily cells;
2. every citizen whose registration, doses or appointments changed: recompute
   their facts (domain.citizen_facts) from the stored rows and update them;
   the change of their waiting status is a delta per municipality;
3. counters (daily doses, site days, municipality queues, waste) get the
   deltas, cells that fall to zero are deleted (so a replay, which never
   creates them, ends with the same rows);
4. last-value tables (sites, capacity overrides, stock levels, adverse events,
   certificates, shipments on the road, supply contracts and their deliveries) are
   upserted; `model_state` keeps the newest `recorded_at`.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from immunreg.contracts.administration import AdverseEventReported
from immunreg.contracts.booking import (
    SiteCapacityChanged,
    SiteDefined,
    SlotsReleased,
    SlotsReserved,
)
from immunreg.contracts.certificates import CertificateIssued, CertificateRevoked
from immunreg.contracts.envelope import Envelope, Event
from immunreg.contracts.inventory import (
    DosesWasted,
    OpenedVialExpired,
    ShipmentDispatched,
    ShipmentReceived,
    StockLevelChanged,
)
from immunreg.contracts.supply import ContractRecorded, DeliveryReceived
from immunreg.eventstore.database import Connection
from immunreg.eventstore.locks import LockKey, lock_for_transaction
from immunreg.structs import Struct

from .domain import (
    Appointment,
    BookingKey,
    CoverageKey,
    DailyKey,
    Dose,
    Facts,
    Registration,
    SiteDailyKey,
    appointment_cells,
    citizen_facts,
    coverage_cells,
    dose_cells,
    evolve_appointment,
    evolve_dose,
    evolve_registration,
    local_day,
    pending_municipality,
    week_of,
)


@dataclass
class Batch:
    """What one batch of events changes, keyed so each row is written once."""

    doses: defaultdict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    appointments: defaultdict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    registrations: defaultdict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    slots: Counter[BookingKey] = field(default_factory=Counter)
    sites: dict[str, SiteDefined] = field(default_factory=dict)
    site_days: dict[tuple[str, date], SiteCapacityChanged] = field(default_factory=dict)
    stock: dict[tuple[str, str], tuple[StockLevelChanged, int, datetime]] = field(
        default_factory=dict
    )
    waste: Counter[tuple[str, str, date]] = field(default_factory=Counter)
    adverse_events: dict[str, AdverseEventReported] = field(default_factory=dict)
    certificates: dict[str, CertificateIssued] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    # shipment id -> (to, product, vials, received): on the road until received
    shipments: dict[str, tuple[str, str, int, bool]] = field(default_factory=dict)
    contracts: dict[str, ContractRecorded] = field(default_factory=dict)
    deliveries: dict[str, DeliveryReceived] = field(default_factory=dict)
    newest: datetime | None = None
    applied: int = 0

    # --- recording (one method per kind of fact; handlers.py says which event goes where)

    def noted(self, event: Event, envelope: Envelope) -> None:
        """Every applied event: how many, and the newest `recorded_at` (freshness)."""
        self.applied += 1
        if self.newest is None or envelope.recorded_at > self.newest:
            self.newest = envelope.recorded_at

    def dose(self, event: Any, envelope: Envelope) -> None:
        self.doses[event.dose_id].append(event)

    def appointment(self, event: Any, envelope: Envelope) -> None:
        self.appointments[event.appointment_id].append(event)

    def registration(self, event: Any, envelope: Envelope) -> None:
        self.registrations[event.citizen_id].append(event)

    def slots_changed(self, event: SlotsReserved | SlotsReleased, envelope: Envelope) -> None:
        sign = 1 if isinstance(event, SlotsReserved) else -1
        self.slots[(event.site_id, event.day, event.product_code)] += sign * len(
            event.appointment_ids
        )

    def site(self, event: SiteDefined, envelope: Envelope) -> None:
        self.sites[event.site_id] = event

    def site_day(self, event: SiteCapacityChanged, envelope: Envelope) -> None:
        self.site_days[(event.site_id, event.day)] = event

    def stock_level(self, event: StockLevelChanged, envelope: Envelope) -> None:
        key = (event.location_id, event.product_code)
        held = self.stock.get(key)
        if held is None or envelope.version > held[1]:
            self.stock[key] = (event, envelope.version, envelope.recorded_at)

    def wasted(self, event: DosesWasted | OpenedVialExpired, envelope: Envelope) -> None:
        doses = event.doses if isinstance(event, DosesWasted) else event.doses_lost
        self.waste[(event.site_id, event.product_code, local_day(envelope.occurred_at))] += doses

    def adverse_event(self, event: AdverseEventReported, envelope: Envelope) -> None:
        self.adverse_events[event.report_id] = event

    def certificate(
        self, event: CertificateIssued | CertificateRevoked, envelope: Envelope
    ) -> None:
        if isinstance(event, CertificateIssued):
            self.certificates[event.uvci] = event
        else:
            self.revoked.add(event.uvci)

    def shipment(self, event: ShipmentDispatched | ShipmentReceived, envelope: Envelope) -> None:
        if isinstance(event, ShipmentDispatched):
            row = (event.to_location, event.product_code, event.vials, False)
        else:
            row = (event.to_location, event.product_code, event.vials_received, True)
        self.shipments[event.shipment_id] = row

    def contract(self, event: ContractRecorded | DeliveryReceived, envelope: Envelope) -> None:
        if isinstance(event, ContractRecorded):
            self.contracts[event.contract_id] = event
        else:
            self.deliveries[event.delivery_id] = event


class Projector:
    """The BatchApplier: one Batch at a time, written by `flush`.

    `replay=True` (a rebuild's) appends the counters' deltas, coverage_daily's included,
    to unindexed staging tables instead of adding them cell by cell, and keeps no
    running sums: `finish_replay` sums the deltas into the counters and fills the
    running sums once, before the swap. A replay moves the same cells again and again
    (every batch of a citizen-ordered history touches most days), and a staged delta is
    one appended row where an upsert is an index probe, a row version and a lock.
    """

    def __init__(self, *, replay: bool = False) -> None:
        self._batch: Batch | None = None
        self.replay = replay

    def begin(self) -> None:
        self._batch = Batch()

    def discard(self) -> None:
        self._batch = None

    @property
    def batch(self) -> Batch:
        """The batch being recorded (handlers run only between begin and flush)."""
        if self._batch is None:
            raise RuntimeError("an event was recorded outside a batch")
        return self._batch

    async def flush(self, conn: Connection) -> None:
        batch, self._batch = self._batch, None
        if batch is not None and batch.applied:
            await write(conn, batch, replay=self.replay)


# --- writing a batch -------------------------------------------------------------------


@dataclass
class Deltas:
    """Counter changes gathered while rows are folded."""

    daily: Counter[DailyKey] = field(default_factory=Counter)
    site_daily: Counter[SiteDailyKey] = field(default_factory=Counter)
    booking: defaultdict[BookingKey, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0])
    )
    waiting: Counter[str] = field(default_factory=Counter)
    booked: Counter[str] = field(default_factory=Counter)
    coverage: Counter[CoverageKey] = field(default_factory=Counter)
    citizens: set[str] = field(default_factory=set)


async def write(conn: Connection, batch: Batch, *, replay: bool = False) -> None:
    """Write one batch (see the module docstring for the order; `replay`: see Projector)."""
    deltas = Deltas()
    await _doses(conn, batch, deltas)
    await _appointments(conn, batch, deltas)
    for key, change in batch.slots.items():
        deltas.booking[key][0] += change
    deltas.citizens.update(batch.registrations)
    await _citizens(conn, batch, deltas)
    await _counters(conn, batch, deltas, staged=replay)
    await _coverage(conn, deltas.coverage, replay=replay)
    await _last_values(conn, batch)
    await conn.execute(
        "UPDATE model_state SET events_applied = events_applied + $1, "
        "newest_recorded_at = GREATEST(newest_recorded_at, $2)",
        batch.applied,
        batch.newest,
    )


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as column arrays, for `unnest($1::type[], ...)`."""
    return [[row[i] for row in rows] for i in range(width)] if rows else [[]] * width


S = TypeVar("S", bound=Struct)


def _by_position(cls: type[S], start: int = 0) -> Callable[[Any], S]:
    """A builder of `cls` (a keyword-only Struct) from a row holding its fields in order
    from `start`. Spelled out once as `cls(f=row[i], ...)`: `cls(**dict(zip(names, row)))`
    took twice as long, for every row a batch reads (a replay reads millions)."""
    fields = enumerate(cls.__struct_fields__)
    arguments = ", ".join(f"{name}=row[{start + i}]" for i, name in fields)
    built: Callable[[Any], S] = eval(f"lambda row: cls({arguments})", {"cls": cls})
    return built


DOSE_COLUMNS = tuple(Dose.__struct_fields__)
_dose_of = _by_position(Dose)
_DOSE_TYPES = (
    "text", "text", "text", "text", "text", "text", "int", "bool", "bool",
    "timestamptz", "date", "int", "text", "bool",
)  # fmt: skip
_UPSERT_DOSES = f"""
INSERT INTO doses ({", ".join(DOSE_COLUMNS)})
SELECT * FROM unnest({", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_DOSE_TYPES))})
ON CONFLICT (dose_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in DOSE_COLUMNS[1:])}
"""


async def _doses(conn: Connection, batch: Batch, deltas: Deltas) -> None:
    if not batch.doses:
        return
    ids = sorted(batch.doses)
    rows = await conn.fetch(
        f"SELECT {', '.join(DOSE_COLUMNS)} FROM doses WHERE dose_id = ANY($1::text[]) "
        "ORDER BY dose_id FOR UPDATE",
        ids,
    )
    current = {r[0]: _dose_of(r) for r in rows}
    changed: list[tuple[Any, ...]] = []
    for dose_id in ids:
        old = new = current.get(dose_id)
        for event in batch.doses[dose_id]:
            new = evolve_dose(new, event)
        if new is None or new == old:
            continue
        for dose, sign in ((old, -1), (new, 1)):
            daily, site_daily = dose_cells(dose)
            for key in daily:
                deltas.daily[key] += sign
            for site_key in site_daily:
                deltas.site_daily[site_key] += sign
            if dose is not None:
                deltas.citizens.add(dose.citizen_id)
        changed.append(tuple(getattr(new, c) for c in DOSE_COLUMNS))
    if changed:
        await conn.execute(_UPSERT_DOSES, *_columns(changed, len(DOSE_COLUMNS)))


APPOINTMENT_COLUMNS = tuple(Appointment.__struct_fields__)
_appointment_of = _by_position(Appointment)
_UPSERT_APPOINTMENTS = f"""
INSERT INTO appointments ({", ".join(APPOINTMENT_COLUMNS)})
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], $6::text[],
                     $7::text[])
ON CONFLICT (appointment_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in APPOINTMENT_COLUMNS[1:])}
"""


async def _appointments(conn: Connection, batch: Batch, deltas: Deltas) -> None:
    if not batch.appointments:
        return
    ids = sorted(batch.appointments)
    rows = await conn.fetch(
        f"SELECT {', '.join(APPOINTMENT_COLUMNS)} FROM appointments "
        "WHERE appointment_id = ANY($1::text[]) ORDER BY appointment_id FOR UPDATE",
        ids,
    )
    current = {r[0]: _appointment_of(r) for r in rows}
    changed: list[tuple[Any, ...]] = []
    for appointment_id in ids:
        old = new = current.get(appointment_id)
        for event in batch.appointments[appointment_id]:
            new = evolve_appointment(new, event)
        if new is None or new == old:
            continue
        for appointment, sign in ((old, -1), (new, 1)):
            for key, counts in appointment_cells(appointment).items():
                cell = deltas.booking[key]
                for i, n in enumerate(counts):
                    cell[i] += sign * n
            municipality = pending_municipality(appointment)
            if municipality is not None:
                deltas.booked[municipality] += sign
            if appointment is not None:
                deltas.citizens.add(appointment.citizen_id)
        changed.append(tuple(getattr(new, c) for c in APPOINTMENT_COLUMNS))
    if changed:
        await conn.execute(_UPSERT_APPOINTMENTS, *_columns(changed, len(APPOINTMENT_COLUMNS)))


_REGISTRATION_FIELDS = tuple(Registration.__struct_fields__)
REGISTRATION_COLUMNS = tuple(f"reg_{c}" for c in _REGISTRATION_FIELDS)
FACT_COLUMNS = tuple(Facts.__struct_fields__)
# A `citizens` row: citizen_id, then Registration's fields, then Facts', in order.
_registration_of = _by_position(Registration, 1)
_facts_of = _by_position(Facts, 1 + len(REGISTRATION_COLUMNS))
_CITIZEN_TYPES = (
    *("bool", "bool", "bool", "date", "text", "text"),  # registration
    *("text", "text", "text", "text", "date", "text", "date", "text", "date", "text", "bool"),
)
_UPDATE_CITIZENS = f"""
UPDATE citizens AS c SET
    {", ".join(f"{col} = u.{col}" for col in (*REGISTRATION_COLUMNS, *FACT_COLUMNS))}
FROM unnest($1::text[], {", ".join(f"${i + 2}::{t}[]" for i, t in enumerate(_CITIZEN_TYPES))})
    AS u(citizen_id, {", ".join((*REGISTRATION_COLUMNS, *FACT_COLUMNS))})
WHERE c.citizen_id = u.citizen_id
"""


async def _citizens(conn: Connection, batch: Batch, deltas: Deltas) -> None:
    if not deltas.citizens:
        return
    ids = sorted(deltas.citizens)
    await conn.execute(
        "INSERT INTO citizens (citizen_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", ids
    )
    rows = await conn.fetch(
        f"SELECT citizen_id, {', '.join((*REGISTRATION_COLUMNS, *FACT_COLUMNS))} FROM citizens "
        "WHERE citizen_id = ANY($1::text[]) ORDER BY citizen_id FOR UPDATE",
        ids,
    )
    doses: defaultdict[str, list[Dose]] = defaultdict(list)
    for r in await conn.fetch(
        f"SELECT {', '.join(DOSE_COLUMNS)} FROM doses "
        "WHERE citizen_id = ANY($1::text[]) AND NOT voided",
        ids,
    ):
        doses[r[1]].append(_dose_of(r))
    pending = {
        r[0]
        for r in await conn.fetch(
            "SELECT DISTINCT citizen_id FROM appointments "
            "WHERE citizen_id = ANY($1::text[]) AND status = 'booked'",
            ids,
        )
    }
    changed: list[tuple[Any, ...]] = []
    for row in rows:
        citizen_id = row[0]
        old_registration = _registration_of(row)
        registration = old_registration
        for event in batch.registrations.get(citizen_id, ()):
            registration = evolve_registration(registration, event)
        old = _facts_of(row)
        new = citizen_facts(registration, doses.get(citizen_id, ()), citizen_id in pending)
        if new == old and registration == old_registration:
            continue
        if old.waiting_in is not None:
            deltas.waiting[old.waiting_in] -= 1
        if new.waiting_in is not None:
            deltas.waiting[new.waiting_in] += 1
        for cell in coverage_cells(old):
            deltas.coverage[cell] -= 1
        for cell in coverage_cells(new):
            deltas.coverage[cell] += 1
        changed.append(
            (
                citizen_id,
                *(getattr(registration, c) for c in Registration.__struct_fields__),
                *(getattr(new, c) for c in FACT_COLUMNS),
            )
        )
    if changed:
        await conn.execute(_UPDATE_CITIZENS, *_columns(changed, len(changed[0])))


async def _add_counts(
    conn: Connection,
    table: str,
    keys: Sequence[tuple[str, str]],
    counts: Sequence[str],
    cells: Mapping[Any, Sequence[int]],
    *,
    staged: bool = False,
) -> None:
    """Add `cells` (key tuple -> counts) to a counter table; delete cells left at zero.

    `staged`: append them to the table's staging table instead (a replay's, see Projector).
    """
    if staged:
        records = [(*key, *values) for key, values in cells.items() if any(values)]
        if records:
            await conn.copy_records_to_table(
                _staging(table), records=records, columns=[k for k, _ in keys] + list(counts)
            )
        return
    rows = sorted(
        (tuple(key) + tuple(values) for key, values in cells.items() if any(values)),
        key=lambda row: tuple(str(v) for v in row[: len(keys)]),
    )
    if not rows:
        return
    names = [k for k, _ in keys]
    types = [t for _, t in keys] + ["int"] * len(counts)
    key_list = ", ".join(names)
    returned = await conn.fetch(
        f"INSERT INTO {table} AS t ({key_list}, {', '.join(counts)}) "
        f"SELECT * FROM unnest({', '.join(f'${i + 1}::{t}[]' for i, t in enumerate(types))}) "
        f"ON CONFLICT ({key_list}) DO UPDATE SET "
        + ", ".join(f"{c} = t.{c} + excluded.{c}" for c in counts)
        + f" RETURNING {key_list}, {' + '.join(f'abs({c})' for c in counts)} AS size",
        *_columns(rows, len(types)),
    )
    empty = [tuple(r[n] for n in names) for r in returned if r["size"] == 0]
    if empty:
        await conn.execute(
            f"DELETE FROM {table} WHERE ({key_list}) IN (SELECT * FROM unnest("
            + ", ".join(f"${i + 1}::{t}[]" for i, (_, t) in enumerate(keys))
            + "))",
            *_columns(empty, len(keys)),
        )


# Every counter table: its key columns (name, type) and its count columns.
COUNTERS: dict[str, tuple[list[tuple[str, str]], list[str]]] = {
    "daily_doses": (
        [("day", "date"), ("product_code", "text"), ("age_band", "text"), ("kind", "text")],
        ["doses"],
    ),
    "site_daily_doses": (
        [("site_id", "text"), ("product_code", "text"), ("day", "date")],
        ["doses"],
    ),
    "booking_days": (
        [("site_id", "text"), ("day", "date"), ("product_code", "text")],
        ["booked", "attended", "missed"],
    ),
    "municipality_queue": ([("municipality_code", "text")], ["waiting", "booked"]),
    "waste_daily": (
        [("site_id", "text"), ("product_code", "text"), ("day", "date")],
        ["doses"],
    ),
    "coverage_daily": (
        [
            ("kind", "text"),
            ("day", "date"),
            ("municipality_code", "text"),
            ("district_code", "text"),
            ("age_band", "text"),
            ("sex", "text"),
            ("product_code", "text"),
        ],
        ["people"],
    ),
}


async def _counters(conn: Connection, batch: Batch, deltas: Deltas, *, staged: bool) -> None:
    await _add_counts(
        conn,
        "daily_doses",
        *COUNTERS["daily_doses"],
        {k: (n,) for k, n in deltas.daily.items()},
        staged=staged,
    )
    await _add_counts(
        conn,
        "site_daily_doses",
        *COUNTERS["site_daily_doses"],
        {k: (n,) for k, n in deltas.site_daily.items()},
        staged=staged,
    )
    await _add_counts(
        conn, "booking_days", *COUNTERS["booking_days"], dict(deltas.booking), staged=staged
    )
    queue = {
        (m,): (deltas.waiting.get(m, 0), deltas.booked.get(m, 0))
        for m in set(deltas.waiting) | set(deltas.booked)
    }
    await _add_counts(
        conn, "municipality_queue", *COUNTERS["municipality_queue"], queue, staged=staged
    )
    await _add_counts(
        conn,
        "waste_daily",
        *COUNTERS["waste_daily"],
        {k: (n,) for k, n in batch.waste.items()},
        staged=staged,
    )


_COVERAGE_KEYS = COUNTERS["coverage_daily"][0]
_CELL = "municipality_code, district_code, age_band, sex, product_code"
# A new week's running sums: the previous week's plus the days from it to the new week,
# written in key order so that an answer reads them from few pages.
_NEW_WEEK = f"""
INSERT INTO coverage_before (kind, week, {_CELL}, people)
SELECT $1, $2, {_CELL}, sum(people) FROM (
    SELECT {_CELL}, people FROM coverage_before WHERE kind = $1 AND week = $3
    UNION ALL
    SELECT {_CELL}, people FROM coverage_daily
    WHERE kind = $1 AND day < $2 AND ($3::date IS NULL OR day >= $3)
) AS cells
GROUP BY {_CELL} HAVING sum(people) <> 0
ORDER BY {_CELL}
"""


async def _coverage(conn: Connection, cells: Mapping[CoverageKey, int], *, replay: bool) -> None:
    """Coverage cells moved by the batch (step 3 for `coverage_daily`, then its running sums).

    A change on day d also changes the running sum of every week after d. A week gets
    running sums when it gets its first day of that kind and loses them with its last,
    so the tables are a function of `coverage_daily` whatever the batches were.
    """
    if replay:
        await _add_counts(
            conn,
            "coverage_daily",
            *COUNTERS["coverage_daily"],
            {key: (n,) for key, n in cells.items()},
            staged=True,
        )
        return
    changed = {key: n for key, n in cells.items() if n}
    if not changed:
        return
    # Creating a week reads coverage_daily as committed: one writer at a time (model.sql
    # fills the tables under the same lock).
    await lock_for_transaction(conn, "coverage", key=LockKey.SCHEMA_AND_NAME)
    await _add_counts(
        conn,
        "coverage_daily",
        *COUNTERS["coverage_daily"],
        {key: (n,) for key, n in changed.items()},
    )
    weeks: defaultdict[str, list[date]] = defaultdict(list)
    for r in await conn.fetch("SELECT kind, week FROM coverage_weeks ORDER BY kind, week"):
        weeks[r["kind"]].append(r["week"])
    later: Counter[tuple[Any, ...]] = Counter()
    for (kind, day, *cell), n in changed.items():
        known = weeks[kind]
        for week in known[bisect_right(known, day) :]:
            later[(kind, week, *cell)] += n
    await _add_counts(
        conn,
        "coverage_before",
        [("kind", "text"), ("week", "date"), *_COVERAGE_KEYS[2:]],
        ["people"],
        {key: (n,) for key, n in later.items()},
    )
    touched = sorted({(kind, week_of(day)) for kind, day, *_ in changed})
    with_days = {
        (r["kind"], r["week"])
        for r in await conn.fetch(
            "SELECT t.kind, t.week FROM unnest($1::text[], $2::date[]) AS t(kind, week) "
            "WHERE EXISTS (SELECT 1 FROM coverage_daily d WHERE d.kind = t.kind "
            "AND d.day >= t.week AND d.day < t.week + 7)",
            [k for k, _ in touched],
            [w for _, w in touched],
        )
    }
    for kind, week in touched:  # in order, so a new week builds on one made just before
        known = weeks[kind]
        if (kind, week) in with_days and week not in known:
            previous = max((w for w in known if w < week), default=None)
            await conn.execute(_NEW_WEEK, kind, week, previous)
            await conn.execute(
                "INSERT INTO coverage_weeks (kind, week) VALUES ($1, $2)", kind, week
            )
            known.append(week)
        elif (kind, week) not in with_days and week in known:
            await conn.execute(
                "DELETE FROM coverage_before WHERE kind = $1 AND week = $2", kind, week
            )
            await conn.execute(
                "DELETE FROM coverage_weeks WHERE kind = $1 AND week = $2", kind, week
            )
            known.remove(week)


def _staging(table: str) -> str:
    return f"{table}_staged"


async def begin_replay(conn: Connection) -> None:
    """The staging tables a replay's Projector appends counter deltas to (no index, no WAL)."""
    for table in COUNTERS:
        await conn.execute(
            f"CREATE UNLOGGED TABLE IF NOT EXISTS {_staging(table)} "
            f"(LIKE {table} INCLUDING DEFAULTS)"
        )


async def finish_replay(conn: Connection) -> None:
    """After a replay: every staged delta summed into its counter (cells left at zero
    deleted, as the live projector does), staging dropped, then coverage's running sums
    filled from coverage_daily (model.sql)."""
    for table, (keys, counts) in COUNTERS.items():
        names = ", ".join(k for k, _ in keys)
        await conn.execute(
            f"INSERT INTO {table} AS t ({names}, {', '.join(counts)}) "
            f"SELECT {names}, {', '.join(f'sum({c})::int' for c in counts)} "
            f"FROM {_staging(table)} GROUP BY {names} ORDER BY {names} "
            f"ON CONFLICT ({names}) DO UPDATE SET "
            + ", ".join(f"{c} = t.{c} + excluded.{c}" for c in counts)
        )
        await conn.execute(f"DELETE FROM {table} WHERE " + " AND ".join(f"{c} = 0" for c in counts))
        await conn.execute(f"DROP TABLE {_staging(table)}")
    await conn.execute("SELECT fill_coverage_running_sums()")


async def _last_values(conn: Connection, batch: Batch) -> None:
    if batch.sites:
        sites = [batch.sites[k] for k in sorted(batch.sites)]
        await conn.execute(
            """
            INSERT INTO sites (site_id, name, municipality_code, daily_capacity, capacity_total)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::int[])
            ON CONFLICT (site_id) DO UPDATE SET name = excluded.name,
                municipality_code = excluded.municipality_code,
                daily_capacity = excluded.daily_capacity,
                capacity_total = excluded.capacity_total
            """,
            [s.site_id for s in sites],
            [s.name for s in sites],
            [s.municipality_code for s in sites],
            [json.dumps(s.daily_capacity, sort_keys=True) for s in sites],
            [sum(s.daily_capacity.values()) for s in sites],
        )
    if batch.site_days:
        days = [batch.site_days[k] for k in sorted(batch.site_days)]
        await conn.execute(
            """
            INSERT INTO site_day_capacity (site_id, day, capacity, capacity_total, closed)
            SELECT * FROM unnest($1::text[], $2::date[], $3::jsonb[], $4::int[], $5::bool[])
            ON CONFLICT (site_id, day) DO UPDATE SET capacity = excluded.capacity,
                capacity_total = excluded.capacity_total, closed = excluded.closed
            """,
            [d.site_id for d in days],
            [d.day for d in days],
            [json.dumps({} if d.closed else d.capacity, sort_keys=True) for d in days],
            [0 if d.closed else sum(d.capacity.values()) for d in days],
            [d.closed for d in days],
        )
    if batch.stock:
        levels = [batch.stock[k] for k in sorted(batch.stock)]
        await conn.execute(
            """
            INSERT INTO stock_levels AS s (location_id, product_code, doses_available,
                                           earliest_expiry, version, as_of)
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::date[], $5::int[],
                                 $6::timestamptz[])
            ON CONFLICT (location_id, product_code) DO UPDATE SET
                doses_available = excluded.doses_available,
                earliest_expiry = excluded.earliest_expiry,
                version = excluded.version, as_of = excluded.as_of
            WHERE s.version < excluded.version
            """,
            [e.location_id for e, _, _ in levels],
            [e.product_code for e, _, _ in levels],
            [e.doses_available for e, _, _ in levels],
            [e.earliest_expiry for e, _, _ in levels],
            [v for _, v, _ in levels],
            [t for _, _, t in levels],
        )
    if batch.adverse_events:
        reports = [batch.adverse_events[k] for k in sorted(batch.adverse_events)]
        await conn.execute(
            """
            INSERT INTO adverse_events (report_id, dose_id, product_code, serious, onset_day)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::date[])
            ON CONFLICT (report_id) DO UPDATE SET dose_id = excluded.dose_id,
                product_code = excluded.product_code, serious = excluded.serious,
                onset_day = excluded.onset_day
            """,
            [r.report_id for r in reports],
            [r.dose_id for r in reports],
            [r.product_code for r in reports],
            [r.serious for r in reports],
            [local_day(r.onset_at) for r in reports],
        )
    if batch.certificates:
        issued = [batch.certificates[k] for k in sorted(batch.certificates)]
        await conn.execute(
            """
            INSERT INTO certificates (uvci, product_code, dose_number, issued_day)
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::date[])
            ON CONFLICT (uvci) DO UPDATE SET product_code = excluded.product_code,
                dose_number = excluded.dose_number, issued_day = excluded.issued_day
            """,
            [c.uvci for c in issued],
            [c.product_code for c in issued],
            [c.dose_number for c in issued],
            [local_day(c.issued_at) for c in issued],
        )
    if batch.revoked:
        await conn.execute(
            "INSERT INTO certificates (uvci, revoked) SELECT unnest($1::text[]), true "
            "ON CONFLICT (uvci) DO UPDATE SET revoked = true",
            sorted(batch.revoked),
        )
    await _supply(conn, batch)


async def _supply(conn: Connection, batch: Batch) -> None:
    """Shipments on the road, contracts and their deliveries (last values)."""
    if batch.shipments:
        ids = sorted(batch.shipments)
        rows = [batch.shipments[k] for k in ids]
        await conn.execute(
            """
            INSERT INTO shipments AS s (shipment_id, to_location, product_code, vials, received)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bool[])
            ON CONFLICT (shipment_id) DO UPDATE SET received = s.received OR excluded.received
            """,
            ids,
            *_columns(rows, 4),
        )
    if batch.contracts:
        contracts = [batch.contracts[k] for k in sorted(batch.contracts)]
        await conn.execute(
            """
            INSERT INTO contracts (contract_id, product_code, total_doses)
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[])
            ON CONFLICT (contract_id) DO NOTHING
            """,
            [c.contract_id for c in contracts],
            [c.product_code for c in contracts],
            [c.total_doses for c in contracts],
        )
    if batch.deliveries:
        deliveries = [batch.deliveries[k] for k in sorted(batch.deliveries)]
        await conn.execute(
            """
            INSERT INTO contract_deliveries (delivery_id, contract_id, product_code, doses)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
            ON CONFLICT (delivery_id) DO NOTHING
            """,
            [d.delivery_id for d in deliveries],
            [d.contract_id for d in deliveries],
            [d.product_code for d in deliveries],
            [d.doses for d in deliveries],
        )
