"""A notifications app on a fresh schema with its own unwrap key, sending to a mailbox (a
real SMTP server and SMS gateway) in this process, fed on the real topics."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from immunreg.config import Settings
from immunreg.eventstore.database import create_pool
from immunreg.http.app import create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.localinfra.mailbox import Mailbox, Received
from services.notifications.app import DEPENDENCIES_KEY, build_service
from services.notifications.handlers import Dependencies

from .feed import Feed

Client = TestClient[web.Request, web.Application]


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    """Poll until `check` returns something truthy (no sleeps as assertions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


def outbound_env(box: Mailbox, smtp_port: int | None = None) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port or box.smtp_port),
        "SMS_GATEWAY_URL": f"http://127.0.0.1:{box.http_port}/v1/sms",
    }


@dataclass
class Notifications:
    """A running notifications service and what a test needs around it."""

    app: web.Application
    client: Client
    pool: asyncpg.Pool
    feed: Feed
    mailbox: Mailbox
    private_pem: bytes

    @property
    def deps(self) -> Dependencies:
        return self.app[DEPENDENCIES_KEY]

    def auth(self, role: Role, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.private_pem, role, **claims)}"}

    @contextlib.contextmanager
    def at(self, moment: datetime) -> Iterator[None]:
        """The service's clock stands at `moment` inside the block."""
        real = self.deps.clock
        self.deps.clock = lambda: moment
        try:
            yield
        finally:
            self.deps.clock = real

    async def messages_of(self, citizen_id: str) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT * FROM messages WHERE citizen_id = $1 ORDER BY created_at", citizen_id
            )
        )

    async def settled(self, citizen_id: str, count: int) -> list[asyncpg.Record]:
        """The citizen's `count` messages once none is due and unsent (a reminder timed
        for later stays pending)."""

        async def check() -> list[asyncpg.Record] | None:
            rows = await self.messages_of(citizen_id)
            now = self.deps.clock()
            busy = [
                r
                for r in rows
                if r["status"] == "sending" or (r["status"] == "pending" and r["due_at"] <= now)
            ]
            return rows if len(rows) >= count and not busy else None

        result: list[asyncpg.Record] = await eventually(check, f"{count} messages settled")
        return result

    async def received(self, address: str, count: int = 1) -> list[Received]:
        async def check() -> list[Received] | None:
            found = self.mailbox.to(address)
            return found if len(found) >= count else None

        result: list[Received] = await eventually(check, f"{count} message(s) to arrive")
        return result


@contextlib.asynccontextmanager
async def running_notifications(
    dsn: str, bootstrap: str, keys: Path, box: Mailbox, **extra: str
) -> AsyncIterator[Notifications]:
    private_jwt, jwks = ensure_dev_keys(keys / "jwt")
    schema = f"t_ntf_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        service="notifications",
        database_url=dsn,
        db_schema=schema,
        kafka_bootstrap=bootstrap,
        jwt_jwks_file=str(jwks),
        relay_poll_interval=0.1,
        consumer_backoff=0.05,
        extra={
            "POLL_INTERVAL": "0.1",
            "RETRY_BASE": "0.1",
            "MAX_ATTEMPTS": "3",
            **outbound_env(box),
            **extra,
        },
    )
    app = create_app(build_service(), settings)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    pool = await create_pool(dsn, schema, min_size=1, max_size=4)
    try:
        yield Notifications(
            app=app,
            client=client,
            pool=pool,
            feed=Feed(bootstrap, pool),
            mailbox=box,
            private_pem=private_jwt.read_bytes(),
        )
    finally:
        await client.close()
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()


@pytest.fixture(scope="module")
async def mailbox() -> AsyncIterator[Mailbox]:
    async with Mailbox().running() as box:
        yield box


@pytest.fixture(scope="module")
async def notifications(
    dsn: str, bootstrap: str, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Notifications]:
    async with running_notifications(
        dsn, bootstrap, tmp_path_factory.mktemp("notifications-keys"), mailbox
    ) as running:
        yield running
