"""HTTP -> event store -> outbox -> Kafka -> another service's read model, end to end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from immunreg.config import Settings
from immunreg.http.app import create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.service import Service
from tally import tally_context

from ..conftest import unique_name
from .tallies import READ_MODEL_SQL, reader, writer


async def client_for(service: Service, settings: Settings) -> TestClient:  # type: ignore[type-arg]
    client = TestClient(TestServer(create_app(service, settings)))
    await client.start_server()
    return client


@pytest.fixture
async def tallies(
    dsn: str, bootstrap: str, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, TestClient, str]]:  # type: ignore[type-arg]
    name = unique_name()
    ctx = tally_context(name)
    private, public = ensure_dev_keys(tmp_path / "keys")
    schema_file = tmp_path / "reader.sql"
    schema_file.write_text(READ_MODEL_SQL)
    common = {
        "database_url": dsn,
        "kafka_bootstrap": bootstrap,
        "jwt_jwks_file": str(public),
        "relay_poll_interval": 0.1,
    }
    writer_client = await client_for(
        writer(ctx),
        Settings(service="w", db_schema=f"{name}_w", **common),  # type: ignore[arg-type]
    )
    reader_client = await client_for(
        reader(ctx, schema_file),
        Settings(service="r", db_schema=f"{name}_r", **common),  # type: ignore[arg-type]
    )
    token = issue_token(private.read_bytes(), Role.ADMIN, subject="tester")
    try:
        yield writer_client, reader_client, token
    finally:
        await writer_client.close()
        await reader_client.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA {name}_w CASCADE; DROP SCHEMA {name}_r CASCADE")
        finally:
            await conn.close()


async def wait_for_total(client: TestClient, tally: str, total: int) -> dict[str, object]:  # type: ignore[type-arg]
    body: dict[str, object] = {}
    for _ in range(300):
        response = await client.get(f"/v1/tallies/{tally}")
        if response.status == 200:
            body = await response.json()
            if body["total"] == total:
                return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"read model never reached {total}: {body}")


async def test_a_command_over_http_reaches_another_services_read_model(
    tallies: tuple[TestClient, TestClient, str],  # type: ignore[type-arg]
) -> None:
    writer_client, reader_client, token = tallies
    auth = {"Authorization": f"Bearer {token}"}
    correlation = str(uuid.uuid4())

    for amount in (5, 7):
        response = await writer_client.post(
            "/v1/tallies/t1/additions", json={"amount": amount}, headers=auth
        )
        assert response.status == 201, await response.text()
    last = await writer_client.post(
        "/v1/tallies/t1/additions",
        json={"amount": 30},
        headers={**auth, "X-Correlation-ID": correlation},
    )
    assert (await last.json()) == {"tally_id": "t1", "version": 3}

    view = await wait_for_total(reader_client, "t1", 42)
    assert view["last_correlation_id"] == correlation

    for client in (writer_client, reader_client):
        ready = await client.get("/readyz")
        assert ready.status == 200, await ready.text()
    metrics = await (await writer_client.get("/metrics")).text()
    assert "immunreg_relay_published_total" in metrics
    assert 'route="/v1/tallies/{tally_id}/additions"' in metrics


async def test_bad_input_is_a_problem_and_changes_nothing(
    tallies: tuple[TestClient, TestClient, str],  # type: ignore[type-arg]
) -> None:
    writer_client, reader_client, token = tallies
    auth = {"Authorization": f"Bearer {token}"}

    wrong_type = await writer_client.post(
        "/v1/tallies/t2/additions", json={"amount": "lots"}, headers=auth
    )
    assert wrong_type.status == 422
    assert wrong_type.content_type == "application/problem+json"
    problem = await wrong_type.json()
    assert problem["errors"][0]["field"] == "body.amount"

    refused = await writer_client.post(
        "/v1/tallies/t2/additions", json={"amount": -1}, headers=auth
    )
    assert refused.status == 422
    body = await refused.json()
    assert body["code"] == "positive_amount"
    assert body["errors"] == [{"field": "body.amount", "reason": "amount must be positive"}]

    no_token = await writer_client.post("/v1/tallies/t2/additions", json={"amount": 1})
    assert no_token.status == 401

    ok = await writer_client.post("/v1/tallies/t2/additions", json={"amount": 1}, headers=auth)
    assert (await ok.json())["version"] == 1, "the refused commands must not have stored events"
    await wait_for_total(reader_client, "t2", 1)


async def test_idempotency_key_records_one_change(
    tallies: tuple[TestClient, TestClient, str],  # type: ignore[type-arg]
) -> None:
    writer_client, reader_client, token = tallies
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "once-only"}
    first = await writer_client.post(
        "/v1/tallies/t3/additions", json={"amount": 4}, headers=headers
    )
    again = await writer_client.post(
        "/v1/tallies/t3/additions", json={"amount": 4}, headers=headers
    )
    assert first.status == again.status == 201
    assert await first.json() == await again.json() == {"tally_id": "t3", "version": 1}
    assert again.headers.get("Idempotent-Replayed") == "true"
    await wait_for_total(reader_client, "t3", 4)
