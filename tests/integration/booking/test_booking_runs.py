"""Scheduling runs as background runs: 202 + Location, a status resource with progress, the
API answering while a run is in progress, and what happens to a run whose process stops.

A run is held in the middle deterministically: the test locks one site's stock row
(`FOR UPDATE`, as a booking there would), so that site's batch waits while the other
site's batch commits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from immunreg.childprocess import follow_reports
from immunreg.config import Settings
from immunreg.eventstore.locks import session_lock
from immunreg.http.app import SETTINGS_KEY
from immunreg.runs import INTERRUPTED, RunRecord
from services.booking import readmodel, runworker
from services.booking.app import CONFIG_KEY, RUNS_KEY
from services.booking.config import BookingConfig
from services.booking.jobs import run_parameters
from services.booking.runworker import start_worker
from services.booking.schemas import RunCounts

from .conftest import PFIZER, Booking, _start, new_site_id

HOME = "70092"  # both sites and every citizen in one Belgrade municipality


def tomorrow() -> timedelta:
    return timedelta(days=1)


async def two_sites(booking: Booking) -> tuple[str, str, list[str]]:
    """Site A and site B, two slots each for one day, and four citizens: the planner puts
    the first two at A and the others at B (sites in id order), so A's batch comes first."""
    first, second = sorted([new_site_id(), new_site_id()])
    for site in (first, second):
        await booking.define_site(site, HOME, {PFIZER: 2})
        await booking.stock(site, PFIZER, 10)
    citizens = [await booking.register(municipality_code=HOME) for _ in range(4)]
    return first, second, citizens


@asynccontextmanager
async def stock_row_locked(pool: asyncpg.Pool, site_id: str) -> AsyncIterator[None]:
    """Hold the site's stock row as a booking there would: its batch waits for us."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT 1 FROM site_stock WHERE site_id = $1 AND product_code = $2 FOR UPDATE",
            site_id,
            PFIZER,
        )
        yield


async def until(booking: Booking, run_id: str, seen: str, batches: int) -> dict[str, object]:
    """Read the run until it shows `seen` with at least `batches` committed."""
    while True:
        view = await booking.read_run(run_id)
        if view["status"] == seen and view["batches_committed"] >= batches:
            return view
        assert view["status"] in ("queued", "running"), view
        await asyncio.sleep(0.05)


async def booked_by(pool: asyncpg.Pool, run_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM appointments WHERE run_id = $1 AND status = 'booked'", run_id
        )
    )


def running_record(prefix: str) -> RunRecord:
    """A scheduling run's record as the service hands it to a worker: running, on
    demand, for tomorrow alone."""
    day = BookingConfig().today() + tomorrow()
    return RunRecord(
        run_id=f"{prefix}-{uuid.uuid4().hex[:8]}",
        kind="scheduling",
        status="running",
        params=run_parameters(trigger="on_demand", from_day=day, horizon_days=1, today=day),
        progress={},
        result=None,
        error=None,
        requested_by=None,
        requested_at=datetime.now(UTC),
        started_at=datetime.now(UTC),
        finished_at=None,
    )


@pytest.fixture
async def serial_booking(
    dsn: str,
    bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Booking]:
    """Booking committing one batch at a time, so batches commit in planner order;
    an indirect parameter is its IN_PROCESS_RUN_MAX (runs up to it in its process)."""
    client, pool, schema, pem = await _start(
        dsn,
        bootstrap,
        tmp_path_factory.mktemp("booking-keys"),
        consume=False,
        COMMIT_CONCURRENCY="1",
        IN_PROCESS_RUN_MAX=getattr(request, "param", "1000"),
    )
    try:
        yield Booking(client=client, pool=pool, schema=schema, private_pem=pem)
    finally:
        await client.close()
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()


# The same run, the same status resource, done in the service's process or in a worker.
@pytest.mark.parametrize(
    "serial_booking", ["1000", "0"], indirect=True, ids=["in_the_service", "in_a_worker"]
)
async def test_a_run_is_accepted_shows_progress_and_completes_with_the_read_models_counts(
    serial_booking: Booking,
) -> None:
    booking = serial_booking
    first, second, citizens = await two_sites(booking)
    day = BookingConfig().today() + tomorrow()
    async with stock_row_locked(booking.pool, second):
        accepted = await booking.start_run(day, 1)  # 202 + Location: checked by start_run
        assert accepted["status"] == "queued" and accepted["booked"] == 0
        assert accepted["requested_by"] == "test-admin"
        # Site A's batch is committed, site B's waits for the stock row: the run is
        # running, and its progress says so.
        running = await until(booking, accepted["run_id"], "running", batches=1)
        assert running["considered"] == 4 and running["booked"] == 2
        assert running["started_at"] is not None and running["finished_at"] is None
        assert "plan" in running["timings"]  # type: ignore[operator]
        assert await booked_by(booking.pool, accepted["run_id"]) == 2
        # The API answers meanwhile.
        sites = await booking.client.get("/v1/sites", headers=booking.admin)
        assert sites.status == 200
        assert {s["site_id"] for s in (await sites.json())["items"]} == {first, second}
    done = await booking.finished(accepted["run_id"])
    assert done["status"] == "completed" and done["error"] is None
    assert done["booked"] == 4 == await booked_by(booking.pool, accepted["run_id"])
    assert done["batches_committed"] == 2 and done["waiting"] == {}
    assert done["seconds"] is not None and done["finished_at"] is not None
    for citizen in citizens:
        (appointment,) = await booking.appointments_of(citizen)
        assert appointment["site_id"] in (first, second)


async def test_an_unknown_run_is_404_and_only_admins_see_runs(booking: Booking) -> None:
    missing = await booking.client.get(f"/v1/scheduling/runs/{uuid.uuid4()}", headers=booking.admin)
    assert missing.status == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    run = await booking.run(BookingConfig().today() + tomorrow(), 1)
    for role, claims in (("citizen", {"citizen_id": "c1"}), ("public_health", {})):
        refused = await booking.client.get(
            f"/v1/scheduling/runs/{run['run_id']}", headers=booking.auth(role, **claims)
        )
        assert refused.status == 403


async def test_the_same_idempotency_key_answers_the_same_run(booking: Booking) -> None:
    body = {"horizon_days": 1}
    headers = {**booking.admin, "Idempotency-Key": f"run-{uuid.uuid4()}"}
    first = await booking.client.post("/v1/scheduling/runs", json=body, headers=headers)
    again = await booking.client.post("/v1/scheduling/runs", json=body, headers=headers)
    assert first.status == again.status == 202
    assert (await first.json())["run_id"] == (await again.json())["run_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert await booking.pool.fetchval("SELECT count(*) FROM background_runs") == 1


async def test_a_running_run_whose_process_is_gone_is_marked_failed_and_one_alive_is_not(
    booking: Booking,
) -> None:
    """The crash rule: `running` with its lock free means its process is gone."""
    runs = booking.client.app[RUNS_KEY]
    params = {"trigger": "on_demand", "from_day": "2030-01-01", "horizon_days": 1}
    params |= {"today": "2029-12-31", "correlation_id": None}
    for run_id in ("left-by-a-dead-process", "held-by-a-live-one"):
        await booking.pool.execute(
            "INSERT INTO background_runs (run_id, kind, status, params, started_at) "
            "VALUES ($1, 'scheduling', 'running', $2::text::jsonb, now())",
            run_id,
            json.dumps(params),
        )
    async with (
        booking.pool.acquire() as alive,
        session_lock(alive, "immunreg-run:held-by-a-live-one") as got,
    ):
        assert got
        assert await runs.fail_interrupted() == 1
    dead = await booking.read_run("left-by-a-dead-process")
    assert dead["status"] == "failed" and dead["error"] == INTERRUPTED
    assert dead["finished_at"] is not None
    assert (await booking.read_run("held-by-a-live-one"))["status"] == "running"


async def test_a_service_stopped_mid_run_fails_the_run_keeps_its_bookings_once_and_the_next_run_books_the_rest(  # noqa: E501
    dsn: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    keys = tmp_path_factory.mktemp("booking-keys")
    client, pool, schema, pem = await _start(
        dsn, bootstrap, keys, consume=False, COMMIT_CONCURRENCY="1"
    )
    booking = Booking(client=client, pool=pool, schema=schema, private_pem=pem)
    try:
        _, second, citizens = await two_sites(booking)
        day = BookingConfig().today() + tomorrow()
        async with stock_row_locked(pool, second):
            accepted = await booking.start_run(day, 1)
            await until(booking, accepted["run_id"], "running", batches=1)
            await client.close()  # the service stops while site B's batch waits
        # Started again: the run says it was interrupted; site A's bookings stand, once.
        booking.client, again, _, _ = await _start(
            dsn, bootstrap, keys, consume=False, schema=schema
        )
        await again.close()
        view = await booking.read_run(accepted["run_id"])
        assert view["status"] == "failed" and view["error"] == INTERRUPTED
        assert view["booked"] == 2 == await booked_by(pool, accepted["run_id"])
        rest = await booking.run(day, 1)
        assert rest["considered"] == 2 and rest["booked"] == 2
        for citizen in citizens:
            assert len(await booking.appointments_of(citizen)) == 1
        booked_events = await pool.fetchval(
            "SELECT count(*) FROM events WHERE type = 'AppointmentBooked'"
        )
        assert booked_events == 4
    finally:
        await booking.client.close()
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()


async def test_the_waiting_list_is_read_a_page_at_a_time_and_whole(
    booking: Booking, monkeypatch: pytest.MonkeyPatch
) -> None:
    citizens = sorted([await booking.register(municipality_code=HOME) for _ in range(5)])
    monkeypatch.setattr(readmodel, "WAITING_PAGE", 2)
    waiting = await readmodel.waiting_citizens(booking.pool)
    assert [c.citizen_id for c in waiting] == citizens
    some = await readmodel.waiting_citizens(booking.pool, citizens[1:4])
    assert [c.citizen_id for c in some] == citizens[1:4]


async def test_a_run_worker_whose_service_is_gone_stops_and_commits_nothing_more(
    serial_booking: Booking,
) -> None:
    """The worker's lifeline: its stdin closes when the service's process dies (killed,
    crashed), and it must then stop; a worker going on alone would commit bookings
    that no run record counts, behind a run the next look marks interrupted."""
    booking = serial_booking
    _, second, _ = await two_sites(booking)
    app = booking.client.app
    record = running_record("orphan")
    seen: list[dict[str, object]] = []

    async def report(progress: Mapping[str, object]) -> None:
        seen.append(dict(progress))
        if progress["batches_committed"] == 1:
            raise EnoughSeen

    # No statement timeout to end the wait for the row: only the lifeline may stop it.
    settings = dataclasses.replace(app[SETTINGS_KEY], db_statement_timeout=600.0)
    async with stock_row_locked(booking.pool, second):
        worker = await start_worker(settings, app[CONFIG_KEY], record)
        assert worker.stdin is not None and worker.stdout is not None
        with pytest.raises(EnoughSeen):
            await follow_reports(worker.stdout, report)  # site A committed, site B waits for us
        worker.stdin.close()  # what the kernel does when the service's process dies
        # It stops while still waiting for the row (a worker that went on would wait
        # here for as long as we hold it).
        assert await asyncio.wait_for(worker.wait(), 60) != 0
        assert await follow_reports(worker.stdout, report) == {}  # stopped, neither done nor failed
    assert seen[-1]["booked"] == 2 == await booked_by(booking.pool, record.run_id)


async def test_a_workers_run_has_the_cyclic_collector_paused_and_it_runs_again_after(
    booking: Booking, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A national run's worker spent a fifth of its CPU in the cyclic collector walking
    the million citizens and the plan it holds (docs/BENCHMARKS.md, "The run's worker
    without the cyclic collector"): the worker pauses it for the run, and only then."""
    app = booking.client.app
    record = running_record("gc")
    collector_during_run: list[bool] = []

    async def scheduling_run(*_: object) -> RunCounts:
        collector_during_run.append(gc.isenabled())
        return RunCounts(booked=1)

    async def not_told_to_stop(work: Coroutine[Any, Any, RunCounts]) -> RunCounts:
        return await work  # (this test's stdin is not a service's lifeline)

    reports: list[tuple[str, object]] = []
    monkeypatch.setattr(runworker, "scheduling_run", scheduling_run)
    monkeypatch.setattr(runworker, "cancelled_when_told_to_stop", not_told_to_stop)
    monkeypatch.setattr(runworker, "report", lambda kind, value: reports.append((kind, value)))
    assert gc.isenabled()
    assert await runworker.work(app[SETTINGS_KEY], app[CONFIG_KEY], record) == 0
    assert collector_during_run == [False]
    assert gc.isenabled()
    assert [kind for kind, _ in reports] == ["result"]


@pytest.fixture
def workers_started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The run ids of the worker processes started from now on (a spy: the worker is
    started as always)."""
    started: list[str] = []
    start = runworker.start_worker

    async def spy(
        settings: Settings, config: BookingConfig, record: RunRecord
    ) -> asyncio.subprocess.Process:
        started.append(record.run_id)
        return await start(settings, config, record)

    monkeypatch.setattr(runworker, "start_worker", spy)
    return started


async def three_waiting(booking: Booking) -> date:
    """One site with room and stock for three, and three citizens waiting; the day."""
    site = new_site_id()
    await booking.define_site(site, HOME, {PFIZER: 3})
    await booking.stock(site, PFIZER, 10)
    for _ in range(3):
        await booking.register(municipality_code=HOME)
    return BookingConfig().today() + tomorrow()


# Three waiting: at IN_PROCESS_RUN_MAX 3 no worker's start to pay for; at 2 the worker's.
@pytest.mark.parametrize(
    ("serial_booking", "in_a_worker"),
    [("3", False), ("2", True)],
    indirect=["serial_booking"],
    ids=["up_to_the_threshold_in_the_service", "over_it_in_a_worker"],
)
async def test_a_run_is_done_in_the_services_process_or_a_worker_by_its_waiting_list(
    serial_booking: Booking, workers_started: list[str], in_a_worker: bool
) -> None:
    done = await serial_booking.run(await three_waiting(serial_booking), 1)
    assert done["booked"] == 3 == await booked_by(serial_booking.pool, done["run_id"])
    assert workers_started == ([done["run_id"]] if in_a_worker else [])


class EnoughSeen(Exception):
    """Stops following a worker's reports once the test has seen what it waits for."""
