"""Notifications: messages that reach people (port 8087).

Consumes registration (language, sealed contacts, the data key granted to the key pair
`notifications` made for each citizen and offered on notifications.events.v1), booking,
certificates, administration and inventory events; queues a message per event that asks
for one, in the consumer's transaction, and sends it by e-mail or SMS
(`immunreg.outbound`) in the person's language. See handlers.py for the reactions,
domain.py for the rules, sender.py for the delivery loop.

Who may do what:
- a person's messages (what, how, when; never the text) and their opt-out: the citizen
  their own, `admin` anyone's;
- every message by status (e.g. dead-lettered) and putting one back in the queue: `admin`.

Settings (each `NOTIFICATIONS_<NAME>`, then `<NAME>`): `POLL_INTERVAL` (1 s),
`RETRY_BASE` (30 s, doubled per try), `MAX_ATTEMPTS` (6); where messages go:
`immunreg.outbound`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from immunreg import holderkeys
from immunreg.config import Settings, positive_number, setting
from immunreg.contracts.notifications import CONTEXT
from immunreg.eventstore.database import view_of
from immunreg.eventstore.store import EventStore
from immunreg.holderkeys import HOLDER_KEYS_SQL
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, STORE_KEY, background_task
from immunreg.http.auth import Role, require_principal
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.problems import FieldError, Problem
from immunreg.http.shutdown import SHUTDOWN_KEY
from immunreg.messaging.reactions import Provided
from immunreg.outbound import Outbound, OutboundConfig
from immunreg.reference.calendar import national_timezone
from immunreg.service import Resource, Service

from . import readmodel
from .domain import BACKOFF_BASE, MAX_ATTEMPTS
from .handlers import Dependencies, NotificationMetrics, build_reactions
from .schemas import (
    MessageList,
    MessagePreferences,
    MessagePreferencesView,
    MessageQuery,
    MessageView,
    Requeued,
)
from .sender import run_sender

SERVICE = "notifications"
OTHER_CITIZEN = "a citizen may see and change only their own messages"
MAX_LIST = 1000

api = Api(
    "notifications",
    "1.0.0",
    "Messages to people by e-mail and SMS, in their language: appointments booked, moved "
    "and cancelled, reminders, invitations, certificates ready, recalled lots.",
)

DEPENDENCIES_KEY = web.AppKey("notifications_dependencies", Dependencies)


def _setting(settings: Settings, name: str) -> str | None:
    return settings.extra.get(name) or setting(name, SERVICE)


def _number(settings: Settings, name: str, default: float) -> float:
    raw = _setting(settings, name)
    return positive_number(name, raw, float) if raw else default


def dependencies_from(
    settings: Settings, store: EventStore, metrics: NotificationMetrics | None
) -> Dependencies:
    """The store, sender and rules the settings name."""
    return Dependencies(
        store=store,
        outbound=Outbound(OutboundConfig.from_settings(SERVICE, settings.extra)),
        zone=national_timezone(),
        clock=lambda: datetime.now(UTC),
        metrics=metrics,
        max_attempts=int(_number(settings, "MAX_ATTEMPTS", MAX_ATTEMPTS)),
        retry_base=timedelta(seconds=_number(settings, "RETRY_BASE", BACKOFF_BASE.total_seconds())),
    )


def _runtime(provided: Provided[Dependencies]) -> Resource:
    async def notifications_runtime(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        deps = dependencies_from(settings, app[STORE_KEY], NotificationMetrics(app[METRICS_KEY]))
        app[DEPENDENCIES_KEY] = deps
        poll = _number(settings, "POLL_INTERVAL", 1.0)
        sender = run_sender(deps, app[POOL_KEY], settings.db_schema, poll)
        offering = holderkeys.offer_missing_at_start(deps.store, app[POOL_KEY], CONTEXT)
        try:
            async with (
                provided.providing(deps),
                background_task(sender, shutdown=app[SHUTDOWN_KEY]),
                background_task(offering, shutdown=app[SHUTDOWN_KEY]),
            ):
                yield
        finally:
            await deps.outbound.close()

    return notifications_runtime


# --- routes -----------------------------------------------------------------------------


@api.get(
    "/v1/citizens/{citizen_id}/messages",
    responses={200: MessageList, 403: None},
    roles={Role.CITIZEN, Role.ADMIN},
    summary="A person's messages (what, how and when; never the text)",
)
async def citizen_messages(request: web.Request) -> web.StreamResponse:
    """The messages queued for the person, oldest first, with their status."""
    citizen_id = request.match_info["citizen_id"]
    require_principal(request).require_own(citizen_id, OTHER_CITIZEN)
    rows = await readmodel.list_messages(request.app[POOL_KEY], citizen_id, None, MAX_LIST)
    return json_response(MessageList([view_of(row, MessageView) for row in rows]))


@api.put(
    "/v1/citizens/{citizen_id}/message-preferences",
    body=MessagePreferences,
    responses={200: MessagePreferencesView, 403: None, 422: None},
    roles={Role.CITIZEN, Role.ADMIN},
    summary="Opt out of messages (or back in)",
)
async def set_message_preferences(
    request: web.Request, body: MessagePreferences
) -> web.StreamResponse:
    """Opted out, a person gets no message but safety notices (a recalled lot)."""
    citizen_id = request.match_info["citizen_id"]
    require_principal(request).require_own(citizen_id, OTHER_CITIZEN)
    await readmodel.set_opted_out(request.app[POOL_KEY], citizen_id, body.opted_out)
    return json_response(MessagePreferencesView(citizen_id=citizen_id, opted_out=body.opted_out))


@api.get(
    "/v1/messages",
    query=MessageQuery,
    responses={200: MessageList, 422: None},
    roles={Role.ADMIN},
    summary="Messages by status (e.g. the dead-lettered) and person",
)
async def list_messages(request: web.Request, query: MessageQuery) -> web.StreamResponse:
    """Messages, oldest first, at most `limit` (1 to 1000)."""
    if not 1 <= query.limit <= MAX_LIST:
        reason = f"limit must be between 1 and {MAX_LIST}"
        raise Problem.unprocessable(reason, errors=[FieldError("query.limit", reason)])
    rows = await readmodel.list_messages(
        request.app[POOL_KEY], query.citizen_id, query.status, query.limit
    )
    return json_response(MessageList([view_of(row, MessageView) for row in rows]))


@api.post(
    "/v1/messages/{message_id}/retry",
    responses={202: Requeued, 404: None},
    roles={Role.ADMIN},
    summary="Put a dead-lettered message back in the queue",
)
async def retry_message(request: web.Request) -> web.StreamResponse:
    """After the cause is fixed (a mail server back, a gateway account topped up)."""
    message_id = request.match_info["message_id"]
    now = request.app[DEPENDENCIES_KEY].clock()
    if not await readmodel.retry_dead_letter(request.app[POOL_KEY], message_id, now):
        raise Problem.not_found("no dead-lettered message has this id")
    return json_response(Requeued(message_id), status=202)


def build_service() -> Service:
    """A fresh notifications Service (its reactions bound to the app it is started in)."""
    provided: Provided[Dependencies] = Provided("notifications' keys and sender")
    return Service(
        name=SERVICE,
        api=api,
        publishes=CONTEXT,
        schema_files=[HOLDER_KEYS_SQL, Path(__file__).with_name("schema.sql")],
        reactions=build_reactions(provided),
        resources=(_runtime(provided),),
    )


service = build_service()
