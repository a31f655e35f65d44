"""All services running as real processes, driven over HTTP as a client would.

Each run uses its own schemas (so its own consumer groups) and its own ports,
so it neither disturbs `make run` nor another test run on the same machine.
Kafka topics are shared: tests use fresh ids and never assume a topic is empty.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from immunreg.config import DEFAULT_PORTS
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.localinfra.services import (
    available_services,
    start_services,
    stop_services,
    wait_ready,
)
from immunreg.paths import state_dir

pytestmark = pytest.mark.e2e


class Stack:
    """URLs of the running services and a way to mint tokens for them."""

    def __init__(self, urls: dict[str, str], private_key: bytes) -> None:
        self.urls = urls
        self._private_key = private_key

    def token(
        self, role: str, *, site_id: str | None = None, citizen_id: str | None = None
    ) -> dict[str, str]:
        """Authorization headers for a development token."""
        token = issue_token(self._private_key, Role(role), site_id=site_id, citizen_id=citizen_id)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def stack(infra: dict[str, str]) -> Iterator[Stack]:
    names = available_services()
    if not names:
        pytest.skip("no services exist yet")
    run = uuid.uuid4().hex[:8]
    base = int(os.environ.get("E2E_PORT_BASE", "18080"))
    ports = {name: base + DEFAULT_PORTS[name] - 8080 for name in names}
    schemas = {name: f"e2e_{run}_{name}" for name in names}
    private, _ = ensure_dev_keys(state_dir() / "keys")
    env = dict(infra)
    env["RELAY_POLL_INTERVAL"] = "0.1"
    for name in names:
        env[f"{name.upper()}_DB_SCHEMA"] = schemas[name]
    processes = start_services(names, env, ports)
    try:
        wait_ready(processes)
        yield Stack({p.name: p.url for p in processes}, private.read_bytes())
    finally:
        stop_services(processes)
        _drop_schemas(infra["DATABASE_URL"], list(schemas.values()))


def _drop_schemas(dsn: str, schemas: list[str]) -> None:
    import asyncio

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for schema in schemas:
                # A service may keep more schemas named after its own (projections'
                # read models: <schema>_m<timestamp>).
                more = await conn.fetch(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                    schema.replace("_", "\\_") + "\\_%",
                )
                for name in [schema, *(r["nspname"] for r in more)]:
                    await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await conn.close()

    asyncio.run(drop())
