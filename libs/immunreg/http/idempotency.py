"""`Idempotency-Key` on POSTs: a retried request replays the first answer.

The key is claimed with an INSERT before the handler runs, so two concurrent
requests with one key cannot both execute; the answer is stored when the
handler finishes, and the claim is dropped when it fails so the client may
retry.

A key is scoped to the caller (role, site, citizen and subject of the token) and to
the method and path: another caller reusing it finds nothing and their request runs
as their own. Before a stored answer is replayed, authorisation runs again: the
route's roles (checked before this module is reached) and the own-record and
own-site checks the first run passed (`immunreg.http.auth.recording_checks`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from importlib import resources

import asyncpg
import msgspec
from aiohttp import web

from immunreg.http.auth import (
    AuthorisationCheck,
    Principal,
    current_principal,
    recheck,
    recording_checks,
)
from immunreg.http.keys import POOL_KEY
from immunreg.http.problems import FieldError, Problem

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
STALE_AFTER = timedelta(seconds=60)
"""A claim still pending this long is taken to be from a crashed process and may be retaken."""
STORED_HEADERS = ("Content-Type", "Location", "ETag")

_codec = msgspec.json.Encoder()
_headers_decoder = msgspec.json.Decoder(dict[str, str])
_checks_decoder = msgspec.json.Decoder(list[AuthorisationCheck])

# A retry of a claim left pending by a crashed process takes it over; a
# pending claim of a live request is left alone (the retry gets 409).
_CLAIM = """
INSERT INTO idempotency_keys (principal, method, path, key, request_hash)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (principal, method, path, key) DO UPDATE SET created_at = clock_timestamp()
WHERE idempotency_keys.completed_at IS NULL
  AND idempotency_keys.request_hash = EXCLUDED.request_hash
  AND idempotency_keys.created_at < now() - $6::interval
RETURNING created_at
"""
_SCOPE = "principal = $1 AND method = $2 AND path = $3 AND key = $4"
_EXISTING = f"""
SELECT request_hash, status, headers::text AS headers, body, completed_at,
       authorisation::text AS authorisation
FROM idempotency_keys WHERE {_SCOPE}
"""
# created_at identifies our claim: a taken-over claim is not ours to finish or drop.
_COMPLETE = f"""
UPDATE idempotency_keys
SET status = $6, headers = $7::text::jsonb, body = $8, authorisation = $9::text::jsonb,
    completed_at = now()
WHERE {_SCOPE} AND created_at = $5 AND completed_at IS NULL
"""
_RELEASE = f"""
DELETE FROM idempotency_keys
WHERE {_SCOPE} AND created_at = $5 AND completed_at IS NULL
"""


def schema_sql() -> str:
    """The DDL of the idempotency table (apply with the service's search_path)."""
    return resources.files("immunreg.http").joinpath("schema.sql").read_text()


def request_hash(method: str, path: str, body: bytes) -> bytes:
    """What makes two requests "the same": method, path with query, body bytes."""
    # Method and path cannot contain a newline, so the framing is unambiguous.
    return hashlib.sha256(f"{method}\n{path}\n".encode() + body).digest()


async def run_idempotent(
    request: web.Request,
    body: bytes,
    handle: Callable[[], Awaitable[web.StreamResponse]],
    *,
    stale_after: timedelta = STALE_AFTER,
) -> web.StreamResponse:
    """Run `handle` at most once per `Idempotency-Key`; without the header, just run it."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return await handle()
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise Problem.bad_request(
            "invalid Idempotency-Key",
            errors=[FieldError(f"header.{IDEMPOTENCY_HEADER}", "must be 1-255 characters")],
        )
    principal = current_principal(request)
    scope = (principal_scope(principal), request.method, request.path, key)
    digest = request_hash(request.method, request.raw_path, body)
    pool = request.app[POOL_KEY]

    claimed: datetime | None = None
    for _ in range(3):
        claimed = await pool.fetchval(_CLAIM, *scope, digest, stale_after)
        if claimed is not None:
            break
        existing = await pool.fetchrow(_EXISTING, *scope)
        if existing is not None:
            return _answer_existing(existing, digest, principal)
        # The first request failed and released its claim between our two queries.
    if claimed is None:
        raise Problem.conflict("a request with this key is in progress", code="idempotency_busy")

    try:
        with recording_checks() as checks:
            response = await handle()
    except BaseException:
        await _release(pool, scope, claimed)
        raise
    stored = _storable_body(response)
    if response.status >= 500 or stored is None:
        await _release(pool, scope, claimed)
        return response
    headers = {h: response.headers[h] for h in STORED_HEADERS if h in response.headers}
    await pool.execute(
        _COMPLETE,
        *scope,
        claimed,
        response.status,
        _codec.encode(headers).decode(),
        stored,
        _codec.encode(checks).decode(),
    )
    return response


def principal_scope(principal: Principal | None) -> str:
    """Whose keys these are: every claim that decides what the caller may do."""
    if principal is None:
        return "anonymous"
    fields = [principal.role.value, principal.site_id, principal.citizen_id, principal.subject]
    return _codec.encode(fields).decode()


def _answer_existing(
    row: asyncpg.Record, digest: bytes, principal: Principal | None
) -> web.Response:
    if bytes(row["request_hash"]) != digest:
        raise Problem.unprocessable(
            "this Idempotency-Key was used for a different request",
            errors=[FieldError(f"header.{IDEMPOTENCY_HEADER}", "reused with a different request")],
            code="idempotency_key_reused",
        )
    if row["completed_at"] is None:
        raise Problem.conflict("a request with this key is in progress", code="idempotency_busy")
    recheck(principal, _checks_decoder.decode(row["authorisation"]))
    headers = _headers_decoder.decode(row["headers"] or "{}")
    headers[REPLAYED_HEADER] = "true"
    return web.Response(status=row["status"], body=row["body"], headers=headers)


def _storable_body(response: web.StreamResponse) -> bytes | None:
    # A streamed or already-sent response cannot be replayed; it just isn't stored.
    if isinstance(response, web.Response) and not response.prepared:
        body = response.body
        if body is None:
            return b""
        if isinstance(body, bytes | bytearray):
            return bytes(body)
    log.warning("response to an idempotent request is not replayable; key released")
    return None


async def _release(pool: asyncpg.Pool, scope: tuple[str, ...], claimed: datetime) -> None:
    # Shielded: a cancelled request must still release its claim, or retries get 409.
    try:
        await asyncio.shield(pool.execute(_RELEASE, *scope, claimed))
    except Exception:
        log.exception("could not release Idempotency-Key claim; it expires after %s", STALE_AFTER)


async def purge_idempotency_keys(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Forget keys older than `older_than` (e.g. 24 h); returns how many went."""
    status: str = await pool.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval", older_than
    )
    return int(status.rsplit(" ", 1)[-1])
