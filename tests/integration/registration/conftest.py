"""The registration service over a real server, PostgreSQL and Kafka, one fresh schema per
test module; keys (JWT, citizen-id, KEK) are made for the test."""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
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
from immunreg.sealing import ensure_key_file
from services.registration import jmbg
from services.registration.app import build_service
from services.registration.keys import KeyRing, load_key_ring

Client = TestClient[web.Request, web.Application]


@dataclass
class Registration:
    """A running registration service and what a test needs around it."""

    app: web.Application
    client: Client
    pool: asyncpg.Pool  # the service's schema, for assertions
    schema: str
    ring: KeyRing
    private_pem: bytes
    rng: random.Random

    def auth(self, role: Role | str, **claims: Any) -> dict[str, str]:
        token = issue_token(self.private_pem, Role(role), **claims)
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(Role.ADMIN, subject="test-admin")

    def citizen(self, citizen_id: str) -> dict[str, str]:
        return self.auth(Role.CITIZEN, citizen_id=citizen_id)

    def site_staff(self, site_id: str = "SITE-0001") -> dict[str, str]:
        return self.auth(Role.SITE_STAFF, site_id=site_id)

    def new_jmbg(self, *, female: bool = True, born: date | None = None) -> tuple[str, date]:
        born = born or date.fromordinal(
            self.rng.randint(date(1930, 1, 1).toordinal(), date(2005, 12, 31).toordinal())
        )
        serial = self.rng.randint(500, 999) if female else self.rng.randint(0, 499)
        return jmbg.make(born, self.rng.randint(0, 99), serial), born

    def body(self, **changes: Any) -> dict[str, Any]:
        """A valid registration for a fresh JMBG (female), with `changes` applied."""
        national_id, born = self.new_jmbg()
        values: dict[str, Any] = {
            "national_id": national_id,
            "given_name": "Jelena",
            "family_name": "Petrović",
            "birth_date": born.isoformat(),
            "sex": "female",
            "municipality_code": "70092",
            "phone": "064 123 4567",
            "email": "jelena@example.rs",
            "priority_group": "chronic_patient",
            "conditions": ["diabetes"],
            "vaccine_preferences": ["EU/1/20/1528", "EU/1/21/1529"],
            "preferred_municipality_code": "70122",
            "consent": {"data_processing": True, "reminders": True},
        }
        values.update(changes)
        return values

    async def register(self, body: dict[str, Any] | None = None) -> str:
        response = await self.client.post(
            "/v1/citizens", json=body or self.body(), headers=self.admin
        )
        assert response.status == 201, await response.text()
        citizen_id: str = (await response.json())["citizen_id"]
        return citizen_id

    async def citizen_of(self, national_id: str) -> str | None:
        """The citizen the national-id index links `national_id` to (None: no row)."""
        found: str | None = await self.pool.fetchval(
            "SELECT citizen_id FROM citizen_national_ids WHERE national_id_hash = $1",
            self.ring.national_id_hash(national_id),
        )
        return found

    async def counts(self) -> dict[str, int]:
        """Rows in every table a registration writes to."""
        counts: dict[str, int] = {}
        for table in ("events", "citizens", "citizen_keys", "citizen_national_ids"):
            counts[table] = await self.pool.fetchval(f"SELECT count(*) FROM {table}")
        return counts


@contextlib.asynccontextmanager
async def running_registration(
    dsn: str,
    bootstrap: str,
    keys: Path,
    *,
    service_dsn: str | None = None,
    extra: dict[str, str] | None = None,
    **overrides: Any,
) -> AsyncIterator[Registration]:
    """A registration service in a fresh schema, its keys made in `keys`.

    The service reaches PostgreSQL at `service_dsn` (a fault proxy, say) when given;
    the test's own pool always uses `dsn`. `overrides` go to its Settings, `extra` to
    its `Settings.extra`. Citizen tokens from sign-in are signed with the test's JWT key.
    """
    private, public = ensure_dev_keys(keys / "jwt")
    ensure_key_file(keys / "id.key")
    ensure_key_file(keys / "kek.key")
    schema = f"t_reg_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        service="registration",
        database_url=service_dsn or dsn,
        db_schema=schema,
        kafka_bootstrap=bootstrap,
        jwt_jwks_file=str(public),
        relay_poll_interval=0.1,
        extra={
            "ID_KEY_FILE": str(keys / "id.key"),
            "KEK_FILE": str(keys / "kek.key"),
            "SIGN_IN_KEY_FILE": str(private),
            **(extra or {}),
        },
        **overrides,
    )
    app = create_app(build_service(), settings)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    pool = await create_pool(dsn, schema, min_size=1, max_size=4)
    try:
        yield Registration(
            app=app,
            client=client,
            pool=pool,
            schema=schema,
            ring=load_key_ring(settings),
            private_pem=private.read_bytes(),
            rng=random.Random(uuid.uuid4().int),
        )
    finally:
        await client.close()
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()


@pytest.fixture(scope="module")
async def registration(
    dsn: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Registration]:
    keys = tmp_path_factory.mktemp("registration-keys")
    async with running_registration(dsn, bootstrap, keys) as running:
        yield running
