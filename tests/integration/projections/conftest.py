"""A projections app reading private topics (its own contexts), and a way to script history.

Each test gets contexts with unique names (`Sources.prefixed`), so its consumer
reads only the events the test publishes, and a fresh service schema; every read
model the test makes is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from immunreg.config import Settings
from immunreg.contracts.envelope import Context, Envelope, Event, Metadata, encode_envelope
from immunreg.contracts.topics import dlq_topic
from immunreg.http.app import create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from services.projections.app import FOLLOWER_KEY, build_service
from services.projections.follower import Follower
from services.projections.handlers import Sources
from services.projections.models import MODEL_TABLES, drop_all

from ..conftest import unique_name
from ..support.kafka import KafkaTools

Client = TestClient[web.Request, web.Application]


@dataclass
class History:
    """Envelopes in the order they happened; versions per stream, recorded_at increasing."""

    sources: Sources
    start: datetime
    envelopes: list[tuple[Context, Envelope]] = field(default_factory=list)
    versions: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(
        self, context: Context, event: Event, stream: str, *, occurred: datetime | None = None
    ) -> Envelope:
        self.versions[stream] += 1
        recorded = self.start + timedelta(seconds=len(self.envelopes))
        envelope = context.envelope(
            event,
            stream_id=stream,
            stream_type=stream.split("-", maxsplit=1)[0],
            version=self.versions[stream],
            metadata=Metadata(occurred_at=occurred) if occurred else None,
            recorded_at=recorded,
        )
        self.envelopes.append((context, envelope))
        return envelope

    @property
    def newest(self) -> datetime:
        return max(e.recorded_at for _, e in self.envelopes)


async def publish(
    bootstrap: str, envelopes: list[tuple[Context, Envelope]], *, transactions: int = 0
) -> list[RecordMetadata]:
    """Publish with a plain producer (duplicates are possible, as in life), or in
    `transactions` Kafka transactions as the relays do (each ends with a commit marker,
    which takes an offset of every partition it wrote to)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        transactional_id=f"test-{uuid.uuid4().hex}" if transactions else None,
    )
    await producer.start()
    try:
        if not transactions:
            futures = [
                await producer.send(
                    context.topic, encode_envelope(envelope), key=envelope.stream_id.encode()
                )
                for context, envelope in envelopes
            ]
            return list(await asyncio.gather(*futures))
        records: list[RecordMetadata] = []
        size = -(-len(envelopes) // transactions)
        for first in range(0, len(envelopes), size):
            async with producer.transaction():
                futures = [
                    await producer.send(
                        context.topic, encode_envelope(envelope), key=envelope.stream_id.encode()
                    )
                    for context, envelope in envelopes[first : first + size]
                ]
            records += await asyncio.gather(*futures)
        return records
    finally:
        await producer.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 90.0
) -> None:
    """Poll until `check` holds (no sleeps as assertions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


async def applied_past(pool: asyncpg.Pool, group: str, records: list[RecordMetadata]) -> bool:
    """Whether the group's stored positions are past every record."""
    rows = await pool.fetch(
        "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1", group
    )
    stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
    return all(stored.get((r.topic, r.partition), -1) > r.offset for r in records)


async def table_rows(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every model table, sorted, for comparing two models."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for table in MODEL_TABLES:
        rows = await conn.fetch(f"SELECT * FROM {schema}.{table}")
        tables[table] = sorted((tuple(r) for r in rows), key=repr)
    return tables


class Projections:
    """The app under test, its topics, and requests with or without a token."""

    def __init__(
        self, client: Client, sources: Sources, schema: str, private_key: bytes, bootstrap: str
    ) -> None:
        self.client = client
        self.sources = sources
        self.schema = schema
        self.private_key = private_key
        self.bootstrap = bootstrap

    @property
    def follower(self) -> Follower:
        return self.client.app[FOLLOWER_KEY]

    def headers(self, role: Role = Role.PUBLIC_HEALTH) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.private_key, role)}"}

    async def get(self, path: str, role: Role | None = Role.PUBLIC_HEALTH, **params: str) -> Any:
        response = await self.client.get(
            path, params=params, headers=self.headers(role) if role else {}
        )
        assert response.status == 200, await response.text()
        return await response.json()

    async def apply(
        self,
        history: History,
        envelopes: list[tuple[Context, Envelope]],
        *,
        transactions: int = 0,
    ) -> None:
        """Publish and wait until the live model has applied all of it."""
        records = await publish(self.bootstrap, envelopes, transactions=transactions)
        follower = self.follower

        async def done() -> bool:
            current = follower.current
            return current is not None and await applied_past(current.pool, current.schema, records)

        await eventually(done, "the live model applied the published events")


@pytest.fixture
async def projections(
    request: pytest.FixtureRequest, dsn: str, bootstrap: str, kafka: KafkaTools, tmp_path: Path
) -> AsyncIterator[Projections]:
    """The service on private topics; `indirect` parametrization overrides its Settings."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    prefix = unique_name("p") + "_"
    sources = Sources.prefixed(prefix)
    await kafka.create(*sources.topics(), *map(dlq_topic, sources.topics()))
    schema = f"t_proj_{uuid.uuid4().hex[:10]}"
    private, public = ensure_dev_keys(tmp_path / "keys")
    settings = Settings(
        service="projections",
        database_url=dsn,
        db_schema=schema,
        kafka_bootstrap=bootstrap,
        jwt_jwks_file=str(public),
        relay_poll_interval=0.1,
        extra={"source_prefix": prefix, "follow_interval": "0.2", "consumer_batch": "500"},
        **overrides,
    )
    client: Client = TestClient(TestServer(create_app(build_service(), settings)))
    await client.start_server()
    try:
        yield Projections(client, sources, schema, private.read_bytes(), bootstrap)
    finally:
        await client.close()
        await drop_all(dsn, schema)
