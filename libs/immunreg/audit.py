"""The audit of reads: who read which citizen's personal or health data, when, and why.

Every service keeps an `audit_log` table in its own schema (`audit.sql`, applied by the
app factory to each one). A route that serves a citizen's data calls `citizen_read`
before answering: it applies the route's rule (`Api.route(roles=...)`) to the caller
and, when the read is allowed, appends one row in the same request; if the row cannot
be written, nothing is served.

Rows are hash-chained: each row's hash covers its own fields and the hash of the row
before it, and `seq` counts up from 1 without gaps, so `verify_chain` (and `immunreg
audit verify`) finds a row that was edited or deleted after the fact, even by someone
who could switch the append-only trigger off. Rows hold no personal data beyond the
citizen id: the reader's subject, role and site, the route, the resource id and the
stated reason.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from immunreg.eventstore.database import Connection
from immunreg.eventstore.locks import LockKey, lock_for_transaction
from immunreg.http.api import ROUTE_KEY, Api, access_reason, json_response, reach_of
from immunreg.http.auth import Principal, Reach, Role, require_principal
from immunreg.http.keys import POOL_KEY
from immunreg.http.problems import Problem
from immunreg.http.versioning import Page, decode_cursor, encode_cursor, page_limit
from immunreg.structs import Struct

AUDIT_SQL = Path(__file__).with_name("audit.sql")
GENESIS = "0" * 64
"""The `previous_hash` of the first row."""
_LOCK = "audit_log"

CitizenAtSite = Callable[[asyncpg.Pool, str, str], Awaitable[bool]]
"""A service's answer, from its own read model, to "is this citizen linked to this site
(an appointment or a dose there)?": (pool, citizen id, site id) -> bool."""

CITIZEN_AT_SITE_KEY: web.AppKey[CitizenAtSite] = web.AppKey("citizen_at_site")


def citizen_at_site_in(table: str) -> CitizenAtSite:
    """The `CitizenAtSite` of a read model table with `citizen_id` and `site_id` columns:
    linked when any row names both."""
    if not table.isidentifier():
        raise ValueError(f"not a table name: {table!r}")
    query = f"SELECT 1 FROM {table} WHERE citizen_id = $1 AND site_id = $2 LIMIT 1"

    async def citizen_at_site(pool: asyncpg.Pool, citizen_id: str, site_id: str) -> bool:
        return await pool.fetchval(query, citizen_id, site_id) is not None

    return citizen_at_site


NOT_AT_SITE = (
    "this citizen has no appointment or dose at your site; "
    "say why you need the record in the Access-Reason header"
)


class AuditEntry(Struct):
    """One read of a citizen's data, as the chain holds it."""

    seq: int
    at: datetime
    subject: str
    role: str
    site_id: str | None
    route: str
    citizen_id: str
    resource_id: str | None
    reason: str | None
    previous_hash: str
    hash: str


class AuditPage(Struct):
    """Reads, newest first, a page at a time."""

    items: list[AuditEntry]
    next_cursor: str | None = None


class AuditQuery(Page):
    """Public-health officers' filter of the audit log."""

    citizen_id: str | None = None


class ChainCheck(Struct):
    """What `verify_chain` found: `ok`, or the first row that breaks the chain and why."""

    ok: bool
    rows: int
    broken_at: int | None = None
    problem: str | None = None


def entry_hash(entry: AuditEntry) -> str:
    """The SHA-256 (hex) of the row's fields and the previous row's hash."""
    fields = [
        entry.seq,
        entry.at.astimezone(UTC).isoformat(),
        entry.subject,
        entry.role,
        entry.site_id,
        entry.route,
        entry.citizen_id,
        entry.resource_id,
        entry.reason,
        entry.previous_hash,
    ]
    return hashlib.sha256(msgspec.json.encode(fields)).hexdigest()


async def append_read(
    pool: asyncpg.Pool,
    principal: Principal,
    *,
    route: str,
    citizen_id: str,
    resource_id: str | None = None,
    reason: str | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one read to the chain (one short transaction) and return its row."""
    async with pool.acquire() as conn, conn.transaction():
        # One writer at a time per schema: the next row must see the last one's hash.
        await lock_for_transaction(conn, _LOCK, key=LockKey.SCHEMA_AND_NAME)
        last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        unsealed = AuditEntry(
            seq=1 if last is None else last["seq"] + 1,
            at=at or datetime.now(UTC),
            subject=principal.subject,
            role=principal.role.value,
            site_id=principal.site_id,
            route=route,
            citizen_id=citizen_id,
            resource_id=resource_id,
            reason=reason,
            previous_hash=GENESIS if last is None else last["hash"],
            hash="",
        )
        entry = msgspec.structs.replace(unsealed, hash=entry_hash(unsealed))
        await conn.execute(
            "INSERT INTO audit_log (seq, at, subject, role, site_id, route, citizen_id,"
            " resource_id, reason, previous_hash, hash)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            *msgspec.structs.astuple(entry),
        )
    return entry


async def citizen_read(
    request: web.Request, citizen_id: str, *, resource_id: str | None = None
) -> None:
    """Allow this read of `citizen_id`'s data by the route's rule, and audit it; else 403.

    Citizens reach their own record; site staff with a linked reach a citizen with an
    appointment or dose at their site (the service's `citizen_at_site`), or any citizen
    when they state why (`Access-Reason`); roles that reach any record, any.
    """
    principal = require_principal(request)
    route = request[ROUTE_KEY]
    reach = reach_of(request)
    reason = access_reason(request)
    principal.require_own(citizen_id, "a citizen may read only their own record")
    if reach is Reach.LINKED and reason is None:
        linked = request.app.get(CITIZEN_AT_SITE_KEY)
        if principal.site_id is None or linked is None:
            raise Problem.forbidden(NOT_AT_SITE, code="citizen_not_at_site")
        if not await linked(request.app[POOL_KEY], citizen_id, principal.site_id):
            raise Problem.forbidden(NOT_AT_SITE, code="citizen_not_at_site")
    elif reach not in (Reach.ANY, Reach.OWN, Reach.LINKED):
        raise RuntimeError(f"{route.path}: reach {reach} does not read a citizen's record")
    await append_read(
        request.app[POOL_KEY],
        principal,
        route=f"{route.method} {route.path}",
        citizen_id=citizen_id,
        resource_id=resource_id,
        reason=reason,
    )


async def read_page(
    conn: Connection | asyncpg.Pool, *, citizen_id: str | None, before: int | None, limit: int
) -> AuditPage:
    """Rows newest first, optionally of one citizen, below `before` (a page's cursor)."""
    rows = await conn.fetch(
        "SELECT seq, at, subject, role, site_id, route, citizen_id, resource_id, reason,"
        " previous_hash, hash FROM audit_log"
        " WHERE ($1::text IS NULL OR citizen_id = $1) AND ($2::bigint IS NULL OR seq < $2)"
        " ORDER BY seq DESC LIMIT $3",
        citizen_id,
        before,
        limit + 1,
    )
    items = [AuditEntry(**dict(row)) for row in rows[:limit]]
    cursor = encode_cursor(items[-1].seq) if len(rows) > limit else None
    return AuditPage(items=items, next_cursor=cursor)


async def verify_chain(conn: Connection) -> ChainCheck:
    """Walk the chain from the first row: every seq in turn, every link, every hash."""
    previous = GENESIS
    rows = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor(
            "SELECT seq, at, subject, role, site_id, route, citizen_id, resource_id, reason,"
            " previous_hash, hash FROM audit_log ORDER BY seq"
        ):
            entry = AuditEntry(**dict(row))
            rows += 1
            problem = None
            if entry.seq != rows:
                problem = f"row {rows} is missing (the next row is {entry.seq})"
            elif entry.previous_hash != previous:
                problem = "does not link to the row before it (that row was changed or removed)"
            elif entry_hash(entry) != entry.hash:
                problem = "its fields do not match its hash (the row was changed)"
            if problem:
                return ChainCheck(ok=False, rows=rows, broken_at=entry.seq, problem=problem)
            previous = entry.hash
    return ChainCheck(ok=True, rows=rows)


def _before(page: Page) -> int | None:
    if not page.cursor:
        return None
    values = decode_cursor(page.cursor)
    if len(values) != 1 or not isinstance(values[0], int):
        raise Problem.unprocessable("this cursor was not made here", code="invalid_cursor")
    return values[0]


async def _page_answer(request: web.Request, citizen_id: str | None, page: Page) -> web.Response:
    limit = page_limit(page)
    pool = request.app[POOL_KEY]
    return json_response(
        await read_page(pool, citizen_id=citizen_id, before=_before(page), limit=limit)
    )


async def audit_reads(request: web.Request, query: AuditQuery) -> web.StreamResponse:
    """Reads of citizens' data in this service, newest first; `citizen_id` narrows them."""
    return await _page_answer(request, query.citizen_id, query)


async def citizen_reads(request: web.Request, query: Page) -> web.StreamResponse:
    """Who read the citizen's data in this service, when, through which route and why."""
    citizen_id = request.match_info["citizen_id"]
    require_principal(request).require_own(citizen_id, "a citizen may see only who read theirs")
    return await _page_answer(request, citizen_id, query)


def reads_citizens(api: Api) -> bool:
    """Whether any route reaches into a citizen's record (a citizen's own or linked)."""
    return any(
        reach in (Reach.OWN, Reach.LINKED)
        for route in api.routes
        for reach in (route.access or {}).values()
    )


def declare_routes(api: Api) -> None:
    """Give the API of a service that serves citizens' records the two audit routes
    (once: a service may be built twice; none for a service that serves no citizen)."""
    if not reads_citizens(api) or any(route.handler is audit_reads for route in api.routes):
        return
    api.get(
        "/v1/audit/reads",
        query=AuditQuery,
        responses={200: AuditPage, 403: None, 422: None},
        roles={Role.PUBLIC_HEALTH: Reach.ANY},
        summary="The audit log of reads of citizens' data (public-health officers)",
        tags=["audit"],
    )(audit_reads)
    api.get(
        "/v1/citizens/{citizen_id}/reads",
        query=Page,
        responses={200: AuditPage, 403: None, 422: None},
        roles={Role.CITIZEN: Reach.OWN},
        summary="Who read my data here",
        tags=["audit"],
    )(citizen_reads)


# --- immunreg audit verify --------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Add `immunreg audit verify SERVICE` to the `immunreg` command."""
    audit = sub.add_parser("audit", help="the audit log of reads of citizens' data")
    actions = audit.add_subparsers(dest="action", required=True)
    verify = actions.add_parser(
        "verify", help="check a service's audit chain: exit 1 naming the first broken row"
    )
    verify.add_argument("service", help="the service whose schema holds the log")
    verify.add_argument("--schema", help="the schema (default: the service's setting)")
    verify.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    import asyncio

    from immunreg.config import Settings

    settings = Settings.from_env(args.service)
    schema = args.schema or settings.db_schema
    check = asyncio.run(_verify_schema(settings.database_url, schema))
    if check.ok:
        sys.stdout.write(f"{schema}.audit_log: {check.rows} rows, chain intact\n")
        return 0
    sys.stdout.write(f"{schema}.audit_log: row {check.broken_at} {check.problem}\n")
    return 1


async def _verify_schema(database_url: str, schema: str) -> ChainCheck:
    from immunreg.eventstore.database import check_schema_name

    check_schema_name(schema)
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        return await verify_chain(conn)
    finally:
        await conn.close()
