"""PostgreSQL down or hung: a fast 503 with Retry-After, nothing half-written, recovery.

The registration service reaches the real PostgreSQL through a TCP proxy the test
controls, with short timeouts; the shared server itself never goes down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ..registration.conftest import Registration, running_registration
from ..support.tcp_proxy import TcpProxy

# Short timeouts keep the test quick; the bounds below follow from them.
TIMEOUTS: dict[str, Any] = {
    "db_connect_timeout": 1.0,
    "db_acquire_timeout": 1.0,
    "db_statement_timeout": 1.0,  # the client gives up at 2 s
    "db_idle_in_transaction_timeout": 2.0,
}
CUT_BOUND = 2.0  # refused at once; well under the connect timeout
FROZEN_BOUND = 4.5  # command timeout (2 s) + releasing the stuck connection (1 s) + slack
READY_BOUND = 3.0  # the readiness check's own deadline (2 s) + slack


@pytest.fixture
async def proxy(dsn: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(dsn)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
async def registration(
    dsn: str, bootstrap: str, proxy: TcpProxy, tmp_path: Path
) -> AsyncIterator[Registration]:
    async with running_registration(
        dsn, bootstrap, tmp_path, service_dsn=proxy.dsn(dsn), **TIMEOUTS
    ) as running:
        yield running


async def refused_within(registration: Registration, body: dict[str, Any], bound: float) -> None:
    started = time.monotonic()
    response = await registration.client.post("/v1/citizens", json=body, headers=registration.admin)
    elapsed = time.monotonic() - started
    assert response.status == 503, await response.text()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    problem = await response.json()
    assert problem["code"] == "database_unavailable"
    assert elapsed < bound, f"took {elapsed:.1f} s"


async def readiness_fails_within(registration: Registration, bound: float) -> None:
    started = time.monotonic()
    response = await registration.client.get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "not_ready" and "database" in body["failed"], body
    assert elapsed < bound, f"took {elapsed:.1f} s"


async def recovers(registration: Registration, body: dict[str, Any], seconds: float = 15) -> None:
    """The same body succeeds again by itself: the refused attempts stored nothing."""
    deadline = time.monotonic() + seconds
    status = 0
    while time.monotonic() < deadline:
        response = await registration.client.post(
            "/v1/citizens", json=body, headers=registration.admin
        )
        status = response.status
        if status == 201:
            break
        assert status == 503, await response.text()
    assert status == 201
    # Readiness also covers the consumers, which reconnect on their own schedule after
    # the database is back: it must return by itself, within the same bound.
    ready = 0
    while time.monotonic() < deadline + seconds and ready != 200:
        ready = (await registration.client.get("/readyz")).status
        if ready != 200:
            await asyncio.sleep(0.2)
    assert ready == 200


async def unavailable_count(registration: Registration) -> float:
    text = await (await registration.client.get("/metrics")).text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("immunreg_database_unavailable_total{")
    )


async def test_database_cut_is_a_fast_503_and_recovers(
    registration: Registration, proxy: TcpProxy
) -> None:
    await registration.register()
    before = await registration.counts()
    body = registration.body()
    await proxy.cut()
    await refused_within(registration, body, CUT_BOUND)
    await refused_within(registration, body, CUT_BOUND)
    await readiness_fails_within(registration, READY_BOUND)
    assert await unavailable_count(registration) >= 2
    assert await registration.counts() == before  # nothing half-written
    await proxy.restore()
    await recovers(registration, body)


async def test_database_frozen_is_a_503_within_the_timeouts_and_recovers(
    registration: Registration, proxy: TcpProxy
) -> None:
    await registration.register()
    before = await registration.counts()
    body = registration.body()
    proxy.freeze()
    await refused_within(registration, body, FROZEN_BOUND)
    await refused_within(registration, body, FROZEN_BOUND)
    await readiness_fails_within(registration, READY_BOUND)
    assert await registration.counts() == before
    await proxy.restore()
    await recovers(registration, body)


async def test_a_statement_stuck_on_a_lock_is_cancelled_by_statement_timeout(
    registration: Registration,
) -> None:
    body = registration.body()
    async with registration.pool.acquire() as conn, conn.transaction():
        # Appends wait behind this lock until statement_timeout cancels them.
        await conn.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
        await refused_within(registration, body, FROZEN_BOUND)
    assert (await registration.client.get("/readyz")).status == 200
    await recovers(registration, body)
