"""The pre-aggregated coverage model answers exactly what the old scan of `citizens` does.

Property: for random histories of registrations, withdrawals, erasures and doses
(administered, corrected, voided), applied by the real projector to a real PostgreSQL
model in random batches, every coverage query (random dose kind, grouping, filters and
as-of date, before, inside and after the history) counts the same people from
`coverage_daily` and `coverage_before` as from a scan of `citizens`, and the answers
are the same after small-number suppression. The running sums and daily cells also
equal what a fresh computation from `citizens` gives (model.sql's fill) and what a
rebuild makes (daily cells while replaying, running sums at the end), so the tables do
not depend on how the events were batched.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dose_events import administered, corrected, dose_record, voided
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Context, Envelope, Event
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    Consent,
    RegistrationWithdrawn,
)
from immunreg.eventstore.database import check_schema_name
from immunreg.reference.geography import age_bands, districts
from services.projections.domain import SUPPRESS_BELOW
from services.projections.handlers import Sources, recorders
from services.projections.models import MODEL_SQL
from services.projections.projector import (
    COUNTERS,
    Batch,
    Projector,
    begin_replay,
    finish_replay,
)
from services.projections.readmodel import coverage, people_with_dose, people_with_dose_by_scan
from services.projections.schemas import CoverageFilters, DoseKind, GroupBy, SexFilter

from .history import BARAJEVO, COMIRNATY, NOVI_SAD, SINOPHARM, VAXZEVRIA

SOURCES = Sources.published()
RECORD: dict[type[Event], tuple[Context, Callable[[Batch, Any, Envelope], None]]] = {
    event_type: (context, record) for context, event_type, record in recorders(SOURCES)
}
START = date(2024, 2, 26)  # a Monday; the history spans about ten weeks
DAYS = 70
MUNICIPALITIES = (BARAJEVO, NOVI_SAD, "70106", "99999")  # the last is not in the census
PRODUCTS = (COMIRNATY, VAXZEVRIA, SINOPHARM)
SEALED = Sealed(key_id="test", nonce="AAAAAAAAAAAAAAAA", ciphertext="dGVzdA==")

citizens = st.sampled_from([f"c{n}" for n in range(8)])
days = st.integers(min_value=0, max_value=DAYS - 1)


def moment(day: int, minute: int) -> datetime:
    # From 22:00 UTC the day in Serbia is already the next one: both sides of midnight.
    return datetime.combine(START + timedelta(days=day), time(0), UTC) + timedelta(minutes=minute)


@st.composite
def registration_event(draw: st.DrawFn) -> Event:
    citizen = draw(citizens)
    kind = draw(st.sampled_from(["registered", "registered", "withdrawn", "erased"]))
    if kind == "withdrawn":
        return RegistrationWithdrawn(citizen_id=citizen)
    if kind == "erased":
        return CitizenErased(citizen_id=citizen)
    return CitizenRegistered(
        citizen_id=citizen,
        birth_date=START - timedelta(days=draw(st.integers(min_value=300, max_value=95 * 365))),
        sex=draw(st.sampled_from(get_args(SexFilter))),
        municipality_code=draw(st.sampled_from(MUNICIPALITIES)),
        priority_group="general",
        consent=Consent(data_processing=True),
        personal=SEALED,
    )


@st.composite
def dose_event(draw: st.DrawFn) -> Event:
    citizen = draw(citizens)
    dose_id = f"d-{citizen}-{draw(st.integers(min_value=1, max_value=3))}"
    number = draw(st.integers(min_value=1, max_value=3))
    booster = number == 3 and draw(st.booleans())
    record = dose_record(
        dose_id=dose_id,
        citizen_id=citizen,
        product_code=draw(st.sampled_from(PRODUCTS)),
        dose_number=number,
        series_complete=number >= 2 and draw(st.booleans()),
        booster=booster,
        administered_at=moment(draw(days), draw(st.integers(min_value=0, max_value=1439))),
        citizen_municipality_code=draw(st.sampled_from(MUNICIPALITIES)),
        age_at_vaccination=draw(st.none() | st.integers(min_value=0, max_value=100)),
        sex=draw(st.none() | st.sampled_from(get_args(SexFilter))),
    )
    kind = draw(st.sampled_from(["administered", "administered", "corrected", "voided"]))
    if kind == "voided":
        return voided(**record, reason="entered twice")
    if kind == "corrected":
        return corrected(**record)
    return administered(**record)


# A history: events in the order they are applied, cut into batches at random places.
histories = st.tuples(
    st.lists(st.one_of(registration_event(), dose_event()), min_size=1, max_size=40),
    st.lists(st.integers(min_value=1, max_value=40), max_size=6),
)


@st.composite
def query(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "group_by": draw(st.sampled_from(get_args(GroupBy))),
        "dose": draw(st.sampled_from(get_args(DoseKind))),
        "on": START + timedelta(days=draw(st.integers(min_value=-3, max_value=DAYS + 10))),
        "filters": CoverageFilters(
            product=draw(st.none() | st.sampled_from(PRODUCTS)),
            age_band=draw(st.none() | st.sampled_from([b.label for b in age_bands()])),
            sex=draw(st.none() | st.sampled_from(get_args(SexFilter))),
            district=draw(st.none() | st.sampled_from(["RS-00", "RS-06", *list(districts())[:3]])),
        ),
    }


def envelopes(events: list[Event]) -> list[tuple[Event, Envelope]]:
    """Each event in its stream, versions in order, recorded a second apart."""
    versions: dict[str, int] = {}
    out = []
    for n, event in enumerate(events):
        context, _ = RECORD[type(event)]
        stream = f"{type(event).__name__}-{getattr(event, 'dose_id', event.citizen_id)}"  # type: ignore[attr-defined]
        versions[stream] = versions.get(stream, 0) + 1
        envelope = context.envelope(
            event,
            stream_id=stream,
            stream_type="test",
            version=versions[stream],
            recorded_at=datetime(2024, 6, 1, tzinfo=UTC) + timedelta(seconds=n),
        )
        out.append((event, envelope))
    return out


async def apply(
    conn: asyncpg.Connection, events: list[Event], cuts: list[int], *, replay: bool = False
) -> None:
    """The projector's write path, one transaction per batch, as the consumer runs it."""
    projector = Projector(replay=replay)
    wrapped = envelopes(events)
    bounds = sorted({0, len(wrapped), *(c for c in cuts if c < len(wrapped))})
    for first, last in itertools.pairwise(bounds):
        async with conn.transaction():
            projector.begin()
            for event, envelope in wrapped[first:last]:
                _, record = RECORD[type(event)]
                projector.batch.noted(event, envelope)
                record(projector.batch, event, envelope)
            await projector.flush(conn)


COVERAGE_TABLES = ("coverage_daily", "coverage_weeks", "coverage_before")


async def rows_of(
    conn: asyncpg.Connection, schema: str, tables: tuple[str, ...] = COVERAGE_TABLES
) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t: sorted(tuple(r) for r in await conn.fetch(f"SELECT * FROM {schema}.{t}")) for t in tables
    }


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories, queries=st.lists(query(), min_size=8, max_size=8))
async def test_the_coverage_model_answers_what_the_scan_answers(
    dsn: str, history: tuple[list[Event], list[int]], queries: list[dict[str, Any]]
) -> None:
    events, cuts = history
    schema = check_schema_name(f"t_cov_{uuid.uuid4().hex[:12]}")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"SET search_path TO {schema}, public")
        await conn.execute(MODEL_SQL.read_text())
        await apply(conn, events, cuts)

        for q in queries:
            model = await people_with_dose(conn, **q)
            scan = await people_with_dose_by_scan(conn, **q)
            assert model == scan, q
            for threshold in (1, SUPPRESS_BELOW):
                served = await coverage(conn, threshold=threshold, **q)
                reference = await coverage(
                    conn, threshold=threshold, count_people=people_with_dose_by_scan, **q
                )
                assert served == reference, q

        # The same tables as a fresh fill from citizens (model.sql's, for older models)...
        every_counter = (*COVERAGE_TABLES, *COUNTERS, "citizens", "doses")
        live = await rows_of(conn, schema, every_counter)
        kept = await rows_of(conn, schema)
        for table in COVERAGE_TABLES:
            await conn.execute(f"TRUNCATE {table}")
        await conn.execute(MODEL_SQL.read_text())
        assert await rows_of(conn, schema) == kept
        # ...and as a rebuild's: every counter's deltas staged while replaying, summed and
        # the running sums filled at the end.
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(MODEL_SQL.read_text())
        await begin_replay(conn)
        await apply(conn, events, cuts, replay=True)
        async with conn.transaction():
            await finish_replay(conn)
        assert await rows_of(conn, schema, every_counter) == live
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def test_a_replay_deletes_the_cells_its_batches_moved_in_and_out_again(dsn: str) -> None:
    """A dose moved to another day in a later batch: its first day's cells sum to zero
    across the staged deltas, and the replay ends without them, as the live model does."""
    fields = dose_record(
        dose_id="d-moved",
        citizen_id="c-moved",
        administered_at=moment(3, 600),
        citizen_municipality_code=NOVI_SAD,
        age_at_vaccination=40,
    )
    events: list[Event] = [
        administered(**fields),
        corrected(**{**fields, "administered_at": moment(20, 600)}),
    ]
    tables = (*COVERAGE_TABLES, *COUNTERS)
    models: list[dict[str, list[tuple[Any, ...]]]] = []
    conn = await asyncpg.connect(dsn)
    try:
        for replay in (False, True):
            schema = check_schema_name(f"t_cov_{uuid.uuid4().hex[:12]}")
            await conn.execute(f"CREATE SCHEMA {schema}")
            try:
                await conn.execute(f"SET search_path TO {schema}, public")
                await conn.execute(MODEL_SQL.read_text())
                if replay:
                    await begin_replay(conn)
                await apply(conn, events, [1], replay=replay)
                if replay:
                    async with conn.transaction():
                        await finish_replay(conn)
                models.append(await rows_of(conn, schema, tables))
            finally:
                await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()
    live, replayed = models
    assert [row[0] for row in live["daily_doses"]] == [START + timedelta(days=20)]
    assert replayed == live
