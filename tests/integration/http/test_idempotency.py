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
from immunreg.http.auth import Principal, require_principal
from immunreg.http.idempotency import principal_scope, purge_idempotency_keys, request_hash
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

    @api.post(
        "/v1/sites/{site_id}/things",
        body=dict[str, Any],
        responses={201: dict[str, Any], 403: None},
        roles={Role.SITE_STAFF, Role.ADMIN},
        idempotent=True,
    )
    async def create_site_thing(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        require_principal(request).require_site(request.match_info["site_id"])
        handler.calls += 1
        return json_response({"id": str(uuid.uuid4()), **body}, status=201)

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
    assert row["principal"] == principal_scope(Principal("alice", Role.ADMIN))
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
        " VALUES ($3, $1, 'POST', '/v1/things', $2, now() - interval '2 minutes')",
        key,
        request_hash("POST", "/v1/things", body),
        principal_scope(Principal("alice", Role.ADMIN)),
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


async def _post_at_site(
    client: Client, keys: tuple[Path, Path], site: str, key: str, **claims: Any
) -> ClientResponse:
    token = issue_token(keys[0].read_bytes(), **claims)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    return await client.post(f"/v1/sites/{site}/things", json={"n": 1}, headers=headers)


async def test_another_principals_key_replays_nothing_of_theirs(
    client: Client, keys: tuple[Path, Path], handler: Handler
) -> None:
    key = str(uuid.uuid4())
    nurse = {"role": Role.SITE_STAFF, "subject": "nurse-1"}
    first = await _post_at_site(client, keys, "SITE-1", key, site_id="SITE-1", **nurse)
    assert first.status == 201
    # The same person (same token subject), now at another site, reusing the key:
    # their request runs as theirs, and their own-site check refuses it.
    moved = await _post_at_site(client, keys, "SITE-1", key, site_id="SITE-2", **nurse)
    assert moved.status == 403
    assert (await moved.json(content_type=None))["code"] == "other_site"
    # Another role with the same subject runs afresh and gets its own answer.
    admin = await _post_at_site(client, keys, "SITE-1", key, role=Role.ADMIN, subject="nurse-1")
    assert admin.status == 201
    assert "Idempotent-Replayed" not in admin.headers
    assert (await admin.json())["id"] != (await first.json())["id"]
    again = await _post_at_site(client, keys, "SITE-1", key, site_id="SITE-1", **nurse)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await first.read()
    assert handler.calls == 2


async def test_a_key_is_scoped_to_the_method_and_path(
    client: Client, keys: tuple[Path, Path], post: Post, handler: Handler
) -> None:
    key = str(uuid.uuid4())
    assert (await post({"n": 1}, key)).status == 201
    elsewhere = await _post_at_site(client, keys, "SITE-1", key, role=Role.ADMIN, subject="alice")
    assert elsewhere.status == 201
    assert "Idempotent-Replayed" not in elsewhere.headers
    assert handler.calls == 2


async def test_a_replay_runs_the_own_site_check_of_the_first_run_again(
    client: Client, keys: tuple[Path, Path], pool: asyncpg.Pool, handler: Handler
) -> None:
    key = str(uuid.uuid4())
    nurse = {"role": Role.SITE_STAFF, "subject": "nurse-2", "site_id": "SITE-1"}
    assert (await _post_at_site(client, keys, "SITE-1", key, **nurse)).status == 201
    [row] = await rows(pool, key)
    assert json.loads(row["authorisation"]) == [["site", "SITE-1", ""]]
    # What the first run was allowed must still be allowed: here the stored check
    # names a site this caller does not work at (as if the rule had changed since).
    await pool.execute(
        """UPDATE idempotency_keys SET authorisation = '[["site", "SITE-9", ""]]'"""
        " WHERE key = $1",
        key,
    )
    refused = await _post_at_site(client, keys, "SITE-1", key, **nurse)
    assert refused.status == 403
    assert "Idempotent-Replayed" not in refused.headers
    assert handler.calls == 1


async def test_the_table_of_unscoped_keys_is_migrated_in_place(dsn: str) -> None:
    schema = f"test_idem_old_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        # The table as it was before keys were scoped by principal and route.
        await conn.execute(
            """CREATE TABLE idempotency_keys (
                principal text NOT NULL, key text NOT NULL, method text, path text,
                request_hash bytea NOT NULL, status integer, headers jsonb, body bytea,
                created_at timestamptz NOT NULL DEFAULT now(), completed_at timestamptz,
                PRIMARY KEY (principal, key))"""
        )
        await conn.execute(
            "INSERT INTO idempotency_keys (principal, key, method, path, request_hash)"
            " VALUES ('alice', 'k', 'POST', '/v1/things', '\\x00')"
        )
        for _ in range(2):  # idempotent: every start applies it
            await conn.execute(schema_sql())
        primary_key = await conn.fetchval(
            "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_constraint c,"
            " unnest(c.conkey) WITH ORDINALITY k(attnum, n)"
            " JOIN pg_attribute a ON a.attnum = k.attnum"
            " WHERE c.conrelid = 'idempotency_keys'::regclass AND c.contype = 'p'"
            " AND a.attrelid = c.conrelid"
        )
        assert primary_key == ["principal", "method", "path", "key"]
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 1
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
