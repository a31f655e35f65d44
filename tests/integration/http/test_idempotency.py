"""Idempotency-Key against the real PostgreSQL: replay, misuse, failure, races."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from immunreg.http import (
    POOL_KEY,
    Api,
    Problem,
    Role,
    TokenVerifier,
    TrustedKeys,
    ensure_dev_keys,
    issue_token,
    json_response,
    middlewares,
    schema_sql,
)
from immunreg.http.idempotency import purge_idempotency_keys, request_hash
from immunreg.observability.metrics import Metrics

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"test_idem_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=4, server_settings={"search_path": schema}
        )
        try:
            await pool.execute(schema_sql())
            yield pool
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


class Handler:
    """The route's behaviour, switchable per test, counting real executions."""

    def __init__(self) -> None:
        self.calls = 0
        self.outcome: str = "ok"
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()


def make_app(pool: asyncpg.Pool, handler: Handler, verifier: TokenVerifier) -> web.Application:
    api = Api(title="idem", version="1")

    @api.post(
        "/v1/things",
        body=dict[str, Any],
        responses={201: dict[str, Any]},
        roles={Role.ADMIN, Role.LOGISTICS},
        idempotent=True,
    )
    async def create_thing(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        handler.calls += 1
        handler.started.set()
        if handler.gate is not None:
            await handler.gate.wait()
        if handler.outcome == "raise":
            raise RuntimeError("database fell over")
        if handler.outcome == "problem":
            raise Problem.conflict("lot recalled", code="lot_recalled")
        if handler.outcome == "503":
            return json_response({"retry": True}, status=503)
        thing_id = str(uuid.uuid4())
        return json_response(
            {"id": thing_id, "call": handler.calls, **body},
            status=201,
            headers={"Location": f"/v1/things/{thing_id}", "X-Not-Stored": "1"},
        )

    app = web.Application(middlewares=middlewares(Metrics("idem"), verifier))
    app[POOL_KEY] = pool
    api.register(app)
    return app


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_dev_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def auth(keys: tuple[Path, Path]) -> Callable[[str], dict[str, str]]:
    def headers(subject: str) -> dict[str, str]:
        token = issue_token(keys[0].read_bytes(), Role.ADMIN, subject=subject)
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture
async def client(
    pool: asyncpg.Pool, handler: Handler, keys: tuple[Path, Path]
) -> AsyncIterator[Client]:
    app = make_app(pool, handler, TokenVerifier(TrustedKeys.read(keys[1])))
    async with TestClient(TestServer(app)) as client:
        yield client


Post = Callable[..., Coroutine[Any, Any, ClientResponse]]


@pytest.fixture
def post(client: Client, auth: Callable[[str], dict[str, str]]) -> Post:
    async def send(body: Any, key: str | None, subject: str = "alice") -> ClientResponse:
        headers = auth(subject)
        if key is not None:
            headers["Idempotency-Key"] = key
        headers["Content-Type"] = "application/json"
        return await client.post("/v1/things", data=json.dumps(body), headers=headers)

    return send


async def rows(pool: asyncpg.Pool, key: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM idempotency_keys WHERE key = $1", key)


async def test_same_key_twice_replays_the_first_answer(
    post: Post, handler: Handler, pool: asyncpg.Pool
) -> None:
    key = str(uuid.uuid4())
    first = await post({"n": 1}, key)
    assert first.status == 201
    second = await post({"n": 1}, key)
    assert second.status == 201
    assert await second.read() == await first.read()
    assert handler.calls == 1
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["Content-Type"].startswith("application/json")
    assert "X-Not-Stored" not in second.headers
    [row] = await rows(pool, key)
    assert row["principal"] == "alice"
    assert row["status"] == 201
    assert row["completed_at"] is not None


async def test_without_a_key_every_request_runs(post: Post, handler: Handler) -> None:
    assert (await post({"n": 1}, None)).status == 201
    assert (await post({"n": 1}, None)).status == 201
    assert handler.calls == 2


async def test_same_key_different_body_is_422(post: Post, handler: Handler) -> None:
    key = str(uuid.uuid4())
    assert (await post({"n": 1}, key)).status == 201
    reused = await post({"n": 2}, key)
    assert reused.status == 422
    body = await reused.json(content_type="application/problem+json")
    assert body["errors"] == [
        {"field": "header.Idempotency-Key", "reason": "reused with a different request"}
    ]
    assert handler.calls == 1


async def test_keys_are_scoped_to_the_caller(post: Post, handler: Handler) -> None:
    key = str(uuid.uuid4())
    mine = await post({"n": 1}, key, subject="alice")
    theirs = await post({"n": 1}, key, subject="bob")
    assert theirs.status == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert (await mine.json())["id"] != (await theirs.json())["id"]
    assert handler.calls == 2


@pytest.mark.parametrize("outcome", ["raise", "503", "problem"])
async def test_failure_releases_the_key_so_a_retry_runs(
    post: Post, handler: Handler, pool: asyncpg.Pool, outcome: str
) -> None:
    key = str(uuid.uuid4())
    handler.outcome = outcome
    failed = await post({"n": 1}, key)
    assert failed.status == {"raise": 500, "503": 503, "problem": 409}[outcome]
    assert await rows(pool, key) == []
    handler.outcome = "ok"
    retried = await post({"n": 1}, key)
    assert retried.status == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert handler.calls == 2
    assert len(await rows(pool, key)) == 1


async def test_concurrent_duplicate_is_409_while_the_first_runs(
    post: Post, handler: Handler
) -> None:
    key = str(uuid.uuid4())
    handler.gate = asyncio.Event()
    first = asyncio.create_task(post({"n": 1}, key))
    await asyncio.wait_for(handler.started.wait(), timeout=5)
    duplicate = await post({"n": 1}, key)
    assert duplicate.status == 409
    assert "in progress" in (await duplicate.json(content_type=None))["detail"]
    handler.gate.set()
    assert (await first).status == 201
    assert handler.calls == 1
    assert (await post({"n": 1}, key)).headers["Idempotent-Replayed"] == "true"


async def test_claim_abandoned_by_a_crash_is_taken_over(
    post: Post, handler: Handler, pool: asyncpg.Pool
) -> None:
    key = str(uuid.uuid4())
    body = json.dumps({"n": 1}).encode()
    # A pending claim two minutes old: its process died before finishing.
    await pool.execute(
        "INSERT INTO idempotency_keys (principal, key, method, path, request_hash, created_at)"
        " VALUES ('alice', $1, 'POST', '/v1/things', $2, now() - interval '2 minutes')",
        key,
        request_hash("POST", "/v1/things", body),
    )
    response = await post({"n": 1}, key)
    assert response.status == 201
    assert handler.calls == 1
    [row] = await rows(pool, key)
    assert row["completed_at"] is not None


async def test_purge_forgets_old_keys(post: Post, pool: asyncpg.Pool) -> None:
    key = str(uuid.uuid4())
    assert (await post({"n": 1}, key)).status == 201
    await pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE key = $1", key
    )
    assert await purge_idempotency_keys(pool, timedelta(days=1)) >= 1
    assert await rows(pool, key) == []
