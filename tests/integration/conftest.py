"""Fixtures for tests against the real PostgreSQL and Kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from immunreg.eventstore.database import apply_schema, create_pool

from .support.kafka import KafkaTools

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def dsn(infra: dict[str, str]) -> str:
    return infra["DATABASE_URL"]


@pytest.fixture(scope="session")
def bootstrap(infra: dict[str, str]) -> str:
    return infra["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture(scope="session")
def kafka(bootstrap: str) -> KafkaTools:
    return KafkaTools(bootstrap)


SchemaFactory = Callable[[], Awaitable[tuple[str, asyncpg.Pool]]]


@pytest.fixture
async def make_schema(dsn: str) -> AsyncIterator[SchemaFactory]:
    """Create fresh service schemas (event store applied); dropped after the test."""
    created: list[tuple[str, asyncpg.Pool]] = []

    async def make() -> tuple[str, asyncpg.Pool]:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        pool = await create_pool(dsn, schema, min_size=1, max_size=20)
        await apply_schema(pool, schema)
        created.append((schema, pool))
        return schema, pool

    yield make
    for schema, pool in created:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()


def unique_name(prefix: str = "t") -> str:
    """A context name no other test uses, so its topic is private to the test."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"
