"""SIGTERM: out of rotation first, in-flight requests finish, the outbox is flushed,
the process exits 0 within its deadline.

The registration service runs as its own process (`immunreg serve`, as in
production). Requests are held in flight by a table lock the test takes, so
they are certainly running when the signal arrives, and released only once the
listener has closed.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid

import aiohttp
import asyncpg
import pytest

from immunreg.eventloop import EVENT_LOOPS
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.localinfra.services import IsolatedStack
from immunreg.paths import keys_dir

from ..support.ports import free_port
from ..support.registration import registration_body

IN_FLIGHT = 8
SHUTDOWN_TIMEOUT = 10.0
DRAIN_DELAY = 1.0


async def waiting_on_lock(conn: asyncpg.Connection, schema: str) -> int:
    count: int = await conn.fetchval(  # sessions of the service blocked by the test's lock
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = $1 AND wait_event_type = 'Lock'",
        schema,
    )
    return count


# On each loop the service may be given (uvloop's signal handling is its own).
@pytest.mark.parametrize("loop_kind", EVENT_LOOPS)
async def test_sigterm_drains_in_flight_requests_and_flushes_the_outbox(
    infra: dict[str, str], dsn: str, loop_kind: str
) -> None:
    private, _ = ensure_dev_keys(keys_dir())
    headers = {"Authorization": f"Bearer {issue_token(private.read_bytes(), Role.ADMIN)}"}
    env = {
        **infra,
        "SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
        "SHUTDOWN_DRAIN_DELAY": str(DRAIN_DELAY),
        "IMMUNREG_EVENT_LOOP": loop_kind,
    }
    stack = await asyncio.to_thread(
        IsolatedStack.start, env, ["registration"], free_port() - 1, f"sig_{uuid.uuid4().hex[:8]}"
    )
    service = stack.processes[0]
    schema = stack.schemas["registration"]
    rng = random.Random(uuid.uuid4().int)
    conn = await asyncpg.connect(dsn)
    try:
        async with aiohttp.ClientSession(headers=headers) as session:

            async def register() -> int:
                url = f"{service.url}/v1/citizens"
                async with session.post(url, json=registration_body(rng)) as response:
                    await response.read()
                    return response.status

            lock = conn.transaction()
            await lock.start()
            await conn.execute(f"LOCK TABLE {schema}.events IN SHARE ROW EXCLUSIVE MODE")
            requests = [asyncio.create_task(register()) for _ in range(IN_FLIGHT)]
            deadline = time.monotonic() + 10
            while not await waiting_on_lock(conn, schema):
                assert time.monotonic() < deadline, "requests did not reach the database"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # the rest are sent, queued behind the lock

            service.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            async with session.get(f"{service.url}/readyz") as ready:
                assert ready.status == 503
                assert (await ready.json())["status"] == "shutting_down"
            await asyncio.sleep(DRAIN_DELAY + 0.5)  # the listener is closed by now
            assert not any(request.done() for request in requests)
            await lock.rollback()

            statuses = await asyncio.gather(*requests)
        assert statuses == [201] * IN_FLIGHT
        code = await asyncio.to_thread(service.process.wait, SHUTDOWN_TIMEOUT + 5)
        elapsed = time.monotonic() - signalled
        log = service.logfile.read_text()
        assert code == 0, log[-3000:]
        loop_lines = [line for line in log.splitlines() if '"event loop: ' in line]
        assert loop_lines and f'"event loop: {loop_kind}.' in loop_lines[-1], loop_lines[-1:]
        assert elapsed < SHUTDOWN_TIMEOUT + 1.0, f"exited after {elapsed:.1f} s"
        # Everything accepted was published before the process went: nothing left behind.
        assert await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox") == 0
        # Each registration: CitizenRegistered. No holder hears this stack's topics to offer
        # a key (the e2e stack's run in a namespace of their own), so nothing else.
        rows = await conn.fetch(f"SELECT stream_id, type FROM {schema}.events ORDER BY recorded_at")
        assert len(rows) == IN_FLIGHT, [tuple(r) for r in rows]
    finally:
        await conn.close()
        await asyncio.to_thread(stack.stop)
