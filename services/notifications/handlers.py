"""Notifications' reactions and deliveries, as plain functions over their dependencies.

The explicit map is `REACTIONS`. Reactions only keep facts and queue messages, in the
consumer's transaction (so a queued message and the consumer's position commit
together, and a redelivered event queues nothing twice: message ids derive from event
ids). Sending happens after, in `deliver_due` (the loop in sender.py): a message is
claimed (committed as `sending`), sent, then marked; see domain.py for its states.

registration.events.v1
- CitizenRegistered, ContactDetailsChanged, PreferencesChanged: keep the language and
  the sealed personal data (contacts are unsealed only while sending). On a
  registration, bind the pooled key it carries a grant to (the grant kept with it),
  else make a key pair for the citizen and offer its public half (`HolderKeyOffered`
  on notifications.events.v1); `immunreg.holderkeys`.
- PersonalDataKeyGranted (recipient `notifications`, to the key offered): keep it, still
  wrapped to that key: the same per-citizen grant certificates gets names by. A message
  due before its grant waits.
- CitizenErased: forget the key pair, the grant and the data, drop what is not sent yet.

booking.events.v1
- SiteDefined: the site's name, address and hours.
- AppointmentBooked: a booking notice (or a second-dose or booster invitation) and a
  reminder timed for the day before.
- AppointmentRescheduled, AppointmentCancelled: a notice; the old reminder is dropped
  (and a new one timed for a moved appointment). AppointmentAttended: reminder dropped.
- AppointmentMissed (the no-show sweep, once the day is over): a notice that the person
  is waiting again (booking's next scheduling run books them); a reminder still pending
  is dropped.

certificates.events.v1
- CertificateIssued: "your certificate is ready".

administration.events.v1, inventory.events.v1
- DoseAdministered: keep the dose's lot (a dose from a lot already recalled gets the
  recall notice); LotRecalled: a notice to everyone who had a dose from the lot.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from prometheus_client import Counter

from immunreg import holderkeys
from immunreg.contracts import administration, booking, certificates, inventory, registration
from immunreg.contracts.administration import DoseAdministered
from immunreg.contracts.booking import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentMissed,
    AppointmentRescheduled,
    SiteDefined,
)
from immunreg.contracts.certificates import CertificateIssued
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Envelope, Event, Metadata
from immunreg.contracts.inventory import LotRecalled
from immunreg.contracts.notifications import CONTEXT
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    ContactDetailsChanged,
    PersonalData,
    PersonalDataKeyGranted,
    PreferencesChanged,
)
from immunreg.eventstore.database import Connection
from immunreg.eventstore.store import EventStore
from immunreg.messaging.reactions import Reactions
from immunreg.observability.metrics import Metrics
from immunreg.outbound import Channel, Outbound, Outgoing, PermanentFailure, TemporaryFailure
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.sealing import UnsealError, unseal

from . import readmodel
from .domain import (
    BACKOFF_BASE,
    MAX_ATTEMPTS,
    Dispatch,
    Facts,
    Kind,
    Planned,
    Recipient,
    after_failure,
    booking_kind,
    dispatch,
    is_stale,
    language_of,
    message_id,
    plan_reminder,
    still_wanted,
)
from .readmodel import Queued
from .templates import Place, render

RECIPIENT = "notifications"
log = logging.getLogger(__name__)
_sealed = msgspec.json.Decoder(Sealed)
_personal = msgspec.json.Decoder(PersonalData)


class NotificationMetrics:
    """Domain counters (created once per app)."""

    def __init__(self, metrics: Metrics) -> None:
        self.outcomes: Counter = metrics.counter(
            "immunreg_notifications_total",
            "Messages by kind and outcome (sent, retried, dropped, dead_lettered).",
            ["kind", "outcome"],
        )


@dataclass
class Dependencies:
    """What reactions and deliveries are given besides a connection; `clock` is replaceable."""

    store: EventStore
    outbound: Outbound
    zone: ZoneInfo
    clock: Callable[[], datetime]
    metrics: NotificationMetrics | None = None
    max_attempts: int = MAX_ATTEMPTS
    retry_base: timedelta = BACKOFF_BASE


# --- reactions ----------------------------------------------------------------------------


async def _queue(deps: Dependencies, conn: Connection, envelope: Envelope, *plans: Planned) -> None:
    if is_stale(envelope.occurred_at, deps.clock()):
        return
    for planned in plans:
        await readmodel.enqueue(conn, planned)


def _now_plan(
    envelope: Envelope, kind: Kind, citizen_id: str, facts: Facts, per_citizen: bool = False
) -> Planned:
    return Planned(
        message_id=message_id(str(envelope.event_id), kind, citizen_id if per_citizen else ""),
        kind=kind,
        citizen_id=citizen_id,
        due_at=envelope.occurred_at,
        facts=facts,
    )


async def _keep_appointment(
    conn: Connection,
    event: AppointmentBooked
    | AppointmentRescheduled
    | AppointmentCancelled
    | AppointmentAttended
    | AppointmentMissed,
    status: str,
) -> None:
    await readmodel.keep_appointment(
        conn,
        event.appointment_id,
        citizen_id=event.citizen_id,
        site_id=event.site_id,
        day=event.day,
        status=status,
    )


async def citizen_registered(
    deps: Dependencies, conn: Connection, event: CitizenRegistered, envelope: Envelope
) -> None:
    """Keep the language and the sealed personal data; bind the pooled key granted its
    data key (or offer one)."""
    await readmodel.keep_citizen(conn, event.citizen_id, event.language, event.personal)
    metadata = Metadata.caused_by(envelope)
    await holderkeys.offer(deps.store, conn, CONTEXT, event, metadata=metadata)


async def contact_changed(
    deps: Dependencies, conn: Connection, event: ContactDetailsChanged, envelope: Envelope
) -> None:
    """Keep the re-sealed personal data."""
    await readmodel.replace_personal(conn, event.citizen_id, event.personal)


async def preferences_changed(
    deps: Dependencies, conn: Connection, event: PreferencesChanged, envelope: Envelope
) -> None:
    """Keep the language."""
    await readmodel.set_language(conn, event.citizen_id, event.language)


async def key_granted(
    deps: Dependencies, conn: Connection, event: PersonalDataKeyGranted, envelope: Envelope
) -> None:
    """Keep a data key granted to this service's key for the citizen (still wrapped)."""
    await holderkeys.keep_grant(conn, RECIPIENT, event)


async def citizen_erased(
    deps: Dependencies, conn: Connection, event: CitizenErased, envelope: Envelope
) -> None:
    """Forget the key and the data; drop what is not sent yet."""
    await readmodel.erase_citizen(conn, event.citizen_id)


async def site_defined(
    deps: Dependencies, conn: Connection, event: SiteDefined, envelope: Envelope
) -> None:
    """Keep what messages say about the site."""
    place = Place(name=event.name, address=event.address, opening_hours=event.opening_hours)
    await readmodel.keep_site(conn, event.site_id, place)


async def appointment_booked(
    deps: Dependencies, conn: Connection, event: AppointmentBooked, envelope: Envelope
) -> None:
    """A booking notice (or an invitation to a later dose) and the day-before reminder."""
    await _keep_appointment(conn, event, "booked")
    facts = Facts(
        appointment_id=event.appointment_id,
        site_id=event.site_id,
        day=event.day,
        product_code=event.product_code,
        dose_number=event.dose_number,
    )
    kind = booking_kind(event.dose_number, event.booster)
    plans = [_now_plan(envelope, kind, event.citizen_id, facts)]
    reminder = plan_reminder(
        str(envelope.event_id), event.citizen_id, facts, deps.clock(), deps.zone
    )
    await _queue(deps, conn, envelope, *plans, *([reminder] if reminder else []))


async def appointment_rescheduled(
    deps: Dependencies, conn: Connection, event: AppointmentRescheduled, envelope: Envelope
) -> None:
    """A notice of the move; the old reminder goes, a new one is timed."""
    await _keep_appointment(conn, event, "booked")
    await readmodel.drop_reminders(conn, event.appointment_id)
    facts = Facts(
        appointment_id=event.appointment_id,
        site_id=event.site_id,
        day=event.day,
        from_site_id=event.from_site_id,
        from_day=event.from_day,
        product_code=event.product_code,
    )
    moved = _now_plan(envelope, Kind.APPOINTMENT_MOVED, event.citizen_id, facts)
    reminder = plan_reminder(
        str(envelope.event_id), event.citizen_id, facts, deps.clock(), deps.zone
    )
    await _queue(deps, conn, envelope, moved, *([reminder] if reminder else []))


async def appointment_cancelled(
    deps: Dependencies, conn: Connection, event: AppointmentCancelled, envelope: Envelope
) -> None:
    """A notice of the cancellation; the reminder goes."""
    await _ended(deps, conn, event, envelope, status="cancelled", kind=Kind.APPOINTMENT_CANCELLED)


async def appointment_attended(
    deps: Dependencies, conn: Connection, event: AppointmentAttended, envelope: Envelope
) -> None:
    """Done: no reminder any more."""
    await _keep_appointment(conn, event, "done")
    await readmodel.drop_reminders(conn, event.appointment_id)


async def appointment_missed(
    deps: Dependencies, conn: Connection, event: AppointmentMissed, envelope: Envelope
) -> None:
    """A notice that the appointment was missed and the person waits again; no reminder."""
    await _ended(deps, conn, event, envelope, status="missed", kind=Kind.APPOINTMENT_MISSED)


async def _ended(
    deps: Dependencies,
    conn: Connection,
    event: AppointmentCancelled | AppointmentMissed,
    envelope: Envelope,
    *,
    status: str,
    kind: Kind,
) -> None:
    """An appointment over without a dose: its status kept, its reminder dropped, a notice."""
    await _keep_appointment(conn, event, status)
    await readmodel.drop_reminders(conn, event.appointment_id)
    facts = Facts(
        appointment_id=event.appointment_id,
        site_id=event.site_id,
        day=event.day,
        product_code=event.product_code,
        reason=event.reason if isinstance(event, AppointmentCancelled) else None,
    )
    await _queue(deps, conn, envelope, _now_plan(envelope, kind, event.citizen_id, facts))


async def certificate_issued(
    deps: Dependencies, conn: Connection, event: CertificateIssued, envelope: Envelope
) -> None:
    """Your certificate is ready."""
    facts = Facts(
        uvci=event.uvci,
        issued_at=event.issued_at,
        product_code=event.product_code,
        dose_number=event.dose_number,
    )
    await _queue(
        deps, conn, envelope, _now_plan(envelope, Kind.CERTIFICATE_READY, event.citizen_id, facts)
    )


async def dose_administered(
    deps: Dependencies, conn: Connection, event: DoseAdministered, envelope: Envelope
) -> None:
    """Keep the dose's lot; a dose from a lot already recalled gets the notice at once."""
    recalled = await readmodel.record_dose(
        conn, event.dose_id, event.citizen_id, event.lot_number, event.product_code
    )
    if recalled:
        facts = Facts(lot_number=event.lot_number, product_code=event.product_code)
        await _queue(
            deps, conn, envelope, _now_plan(envelope, Kind.LOT_RECALLED, event.citizen_id, facts)
        )


async def lot_recalled(
    deps: Dependencies, conn: Connection, event: LotRecalled, envelope: Envelope
) -> None:
    """A notice to each person who had a dose from the lot."""
    facts = Facts(lot_number=event.lot_number, product_code=event.product_code)
    plans = [
        _now_plan(envelope, Kind.LOT_RECALLED, citizen_id, facts, per_citizen=True)
        for citizen_id in await readmodel.record_recall(conn, event.lot_number)
    ]
    await _queue(deps, conn, envelope, *plans)


Reaction = Callable[[Dependencies, Connection, Any, Envelope], Awaitable[None]]

# Every reaction of the service: which handler runs when which event arrives.
REACTIONS: tuple[tuple[Any, type[Event], Reaction], ...] = (
    (registration.CONTEXT, CitizenRegistered, citizen_registered),
    (registration.CONTEXT, ContactDetailsChanged, contact_changed),
    (registration.CONTEXT, PreferencesChanged, preferences_changed),
    (registration.CONTEXT, PersonalDataKeyGranted, key_granted),
    (registration.CONTEXT, CitizenErased, citizen_erased),
    (booking.CONTEXT, SiteDefined, site_defined),
    (booking.CONTEXT, AppointmentBooked, appointment_booked),
    (booking.CONTEXT, AppointmentRescheduled, appointment_rescheduled),
    (booking.CONTEXT, AppointmentCancelled, appointment_cancelled),
    (booking.CONTEXT, AppointmentAttended, appointment_attended),
    (booking.CONTEXT, AppointmentMissed, appointment_missed),
    (certificates.CONTEXT, CertificateIssued, certificate_issued),
    (administration.CONTEXT, DoseAdministered, dose_administered),
    (inventory.CONTEXT, LotRecalled, lot_recalled),
)


def _given(
    reaction: Reaction, dependencies: Callable[[], Dependencies]
) -> Callable[[Connection, Any, Envelope], Awaitable[None]]:
    async def handle(conn: Connection, event: Any, envelope: Envelope) -> None:
        await reaction(dependencies(), conn, event, envelope)

    return handle


def build_reactions(dependencies: Callable[[], Dependencies]) -> Reactions:
    """The `REACTIONS` table, each handler given the dependencies of the running app."""
    reactions = Reactions()
    for context, event_type, reaction in REACTIONS:
        reactions.add(context, event_type, _given(reaction, dependencies))
    return reactions


# --- deliveries ---------------------------------------------------------------------------

DELIVERY_BATCH = 50


async def deliver_due(deps: Dependencies, pool: asyncpg.Pool) -> int:
    """Claim the messages due now and send each; how many were claimed."""
    async with pool.acquire() as conn:
        claimed = await readmodel.claim_due(conn, deps.clock(), DELIVERY_BATCH)
    for queued in claimed:
        await deliver(deps, pool, queued)
    return len(claimed)


async def deliver(deps: Dependencies, pool: asyncpg.Pool, queued: Queued) -> None:
    """Send one claimed message, or drop it, or put it back for later, or dead-letter it."""
    async with pool.acquire() as conn:
        recipient, language = await _recipient(deps, conn, queued.citizen_id)
        decision = dispatch(queued.kind, recipient)
        facts = queued.facts
        place = await readmodel.site(conn, facts.site_id)
        from_place = await readmodel.site(conn, facts.from_site_id)
        booked = await readmodel.appointment(conn, facts.appointment_id)
    if not still_wanted(
        queued.kind, facts, booked["status"] if booked else None, booked["day"] if booked else None
    ):
        decision = Dispatch("drop", reason="appointment changed")
    if decision.action == "send" and facts.site_id is not None and place is None:
        decision = Dispatch("wait", reason="the site has not been defined yet")
    if decision.action == "drop":
        await _finish(deps, pool, queued, "dropped", decision.reason)
        return
    if decision.action == "wait":
        await _failed(deps, pool, queued, decision.reason)
        return
    assert decision.channel is not None and decision.address is not None
    product = vaccine_catalog().get(facts.product_code or "")
    text = render(
        queued.kind,
        language,
        facts,
        zone=deps.zone,
        vaccine=product.name if product else (facts.product_code or ""),
        place=place,
        from_place=from_place,
    )
    outgoing = Outgoing(
        message_id=queued.message_id,
        channel=Channel(decision.channel),
        to=decision.address,
        subject=text.subject,
        body=text.body,
    )
    try:
        await deps.outbound.send(outgoing)
    except TemporaryFailure as exc:
        await _failed(deps, pool, queued, str(exc))
        return
    except PermanentFailure as exc:
        await _failed(deps, pool, queued, str(exc), permanent=True)
        return
    await readmodel.mark_sent(pool, queued.message_id, decision.channel, deps.clock())
    _count(deps, queued.kind, "sent")


async def _recipient(
    deps: Dependencies, conn: Connection, citizen_id: str
) -> tuple[Recipient, str]:
    row = await readmodel.recipient_row(conn, citizen_id)
    if row is None:
        return Recipient(known=False), language_of(None)
    language = language_of(row["language"])
    if row["erased"]:
        return Recipient(erased=True), language
    if row["personal"] is None or row["wrapped_key"] is None or row["private_key"] is None:
        return Recipient(known=False, opted_out=row["opted_out"]), language
    try:
        data_key = holderkeys.open_grant(
            RECIPIENT, citizen_id, row["private_key"], row["wrapped_key"]
        )
        personal = _personal.decode(
            unseal(data_key, _sealed.decode(row["personal"]), citizen_id.encode())
        )
    except (UnsealError, ValueError, msgspec.DecodeError):
        # Counted as "not arrived": a grant that does not open never will, and the
        # message ends dead-lettered, for a person to look at.
        log.warning("the granted key does not open a citizen's personal data")
        return Recipient(known=False), language
    return (
        Recipient(opted_out=row["opted_out"], email=personal.email, phone=personal.phone),
        language,
    )


async def _failed(
    deps: Dependencies, pool: asyncpg.Pool, queued: Queued, reason: str, *, permanent: bool = False
) -> None:
    outcome = after_failure(
        queued.attempts,
        deps.clock(),
        permanent=permanent,
        max_attempts=deps.max_attempts,
        base=deps.retry_base,
    )
    if outcome.retry_at is None:
        await _finish(deps, pool, queued, "dead_lettered", reason)
        log.error(
            "message %s dead-lettered after %d tries: %s",
            queued.message_id,
            queued.attempts,
            reason,
        )
        return
    await readmodel.mark_retry(pool, queued.message_id, outcome.retry_at, reason)
    _count(deps, queued.kind, "retried")


async def _finish(
    deps: Dependencies, pool: asyncpg.Pool, queued: Queued, status: str, reason: str
) -> None:
    await readmodel.mark_final(pool, queued.message_id, status, reason)
    _count(deps, queued.kind, status)


def _count(deps: Dependencies, kind: Kind, outcome: str) -> None:
    if deps.metrics is not None:
        deps.metrics.outcomes.labels(kind.value, outcome).inc()
