"""Two stacks on one broker never hear each other: each has topics of its own.

The e2e tests' stack runs for the whole session; a service another test starts
beside it used to publish on the same topics, so the e2e stack's certificates and
notifications offered keys for that test's citizens, and its registration granted
them: an event the test never asked for (a flaky count in test_graceful_shutdown).
"""

from __future__ import annotations

import asyncio
import random
import uuid

import aiohttp
import asyncpg

from immunreg.contracts.envelope import decode_envelope
from immunreg.contracts.registration import CONTEXT, CitizenRegistered
from immunreg.contracts.topics import events_topic
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.localinfra.services import IsolatedStack
from immunreg.messaging.topics import read_topic
from immunreg.paths import keys_dir

from ..support.ports import free_port
from ..support.registration import registration_body


async def published(dsn: str, schema: str) -> None:
    """Until the stack's outbox is empty (what it accepted is on its topic)."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(200):
            if not await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the outbox was not published within 10 s")
    finally:
        await conn.close()


async def test_a_stack_never_hears_another_stacks_events(infra: dict[str, str]) -> None:
    private, _ = ensure_dev_keys(keys_dir())  # before the services start: they read it
    quiet, busy = await asyncio.gather(
        *(
            asyncio.to_thread(
                IsolatedStack.start,
                infra,
                ["registration"],
                free_port() - 1,
                f"iso{n}_{uuid.uuid4().hex[:8]}",
            )
            for n in (1, 2)
        )
    )
    try:
        assert quiet.namespace != busy.namespace
        headers = {"Authorization": f"Bearer {issue_token(private.read_bytes(), Role.ADMIN)}"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.post(
                f"{busy.urls['registration']}/v1/citizens",
                json=registration_body(random.Random(uuid.uuid4().int)),
            ) as response,
        ):
            assert response.status == 201, await response.text()
            citizen_id = (await response.json())["citizen_id"]
        await published(busy.dsn, busy.schemas["registration"])

        bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
        heard = await read_topic(bootstrap, events_topic(CONTEXT.name, busy.namespace))
        events = [CONTEXT.read(decode_envelope(r.value or b"")) for r in heard]
        assert [type(e) for e in events] == [CitizenRegistered]
        assert isinstance(events[0], CitizenRegistered) and events[0].citizen_id == citizen_id
        # The other stack's topic is where its own registration publishes: nothing there.
        assert await read_topic(bootstrap, events_topic(CONTEXT.name, quiet.namespace)) == []
    finally:
        await asyncio.gather(asyncio.to_thread(quiet.stop), asyncio.to_thread(busy.stop))
