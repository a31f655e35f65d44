"""A tiny example context, built the way every real service is (not shipped).

`writer` takes commands over HTTP and appends Counted events; `reader`
consumes them into a read model and serves it.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from immunreg.contracts.envelope import Context, Envelope
from immunreg.eventstore.database import Connection
from immunreg.http.api import Api, json_response
from immunreg.http.app import STORE_KEY
from immunreg.http.auth import Role
from immunreg.http.keys import POOL_KEY
from immunreg.http.middleware import metadata_from_request
from immunreg.http.problems import Problem
from immunreg.messaging.reactions import Reactions
from immunreg.service import Service
from tally import Add, Counted, tally_aggregate

READ_MODEL_SQL = """
CREATE TABLE IF NOT EXISTS tally_totals (
    tally_id text PRIMARY KEY,
    total bigint NOT NULL,
    last_correlation_id uuid
)
"""


class AddBody(msgspec.Struct, frozen=True):
    amount: int


class Added(msgspec.Struct, frozen=True):
    tally_id: str
    version: int


class TallyView(msgspec.Struct, frozen=True):
    tally_id: str
    total: int
    last_correlation_id: str | None


def writer(ctx: Context) -> Service:
    api = Api("tally-writer", "1.0.0")
    aggregate = tally_aggregate(ctx)

    @api.post(
        "/v1/tallies/{tally_id}/additions",
        body=AddBody,
        responses={201: Added, 422: None},
        roles={Role.ADMIN},
        idempotent=True,
    )
    async def add(request: web.Request, body: AddBody) -> web.StreamResponse:
        tally_id = request.match_info["tally_id"]
        outcome = await request.app[STORE_KEY].execute(
            aggregate, tally_id, Add(amount=body.amount), metadata=metadata_from_request(request)
        )
        return json_response(Added(tally_id, outcome.version), status=201)

    return Service(name="tally-writer", api=api, publishes=ctx)


def reader(ctx: Context, schema_file: object) -> Service:
    api = Api("tally-reader", "1.0.0")
    reactions = Reactions()

    @reactions.on(ctx, Counted)
    async def counted(conn: Connection, event: Counted, envelope: Envelope) -> None:
        await conn.execute(
            """
            INSERT INTO tally_totals (tally_id, total, last_correlation_id) VALUES ($1, $2, $3)
            ON CONFLICT (tally_id) DO UPDATE
               SET total = tally_totals.total + excluded.total,
                   last_correlation_id = excluded.last_correlation_id
            """,
            envelope.stream_id,
            event.amount,
            envelope.correlation_id,
        )

    @api.get("/v1/tallies/{tally_id}", responses={200: TallyView, 404: None})
    async def read(request: web.Request) -> web.StreamResponse:
        row = await request.app[POOL_KEY].fetchrow(
            "SELECT tally_id, total, last_correlation_id::text AS c FROM tally_totals "
            "WHERE tally_id = $1",
            request.match_info["tally_id"],
        )
        if row is None:
            raise Problem.not_found("no such tally")
        return json_response(TallyView(row["tally_id"], row["total"], row["c"]))

    return Service(
        name="tally-reader",
        api=api,
        reactions=reactions,
        schema_files=[schema_file],  # type: ignore[list-item]
    )
