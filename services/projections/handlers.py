"""Projections' reactions: every event of every context, and what the projector records for it.

The table below (`recorders`) is the whole of the projections' reactions; the
service has no commands of its own (a rebuild is `rebuild.rebuild`, run by
`immunreg projections rebuild`). Events it does not
name (contact details changed, notifications, allocation runs...) are still applied
as no-ops, so the model's freshness is that of the newest event on any topic.

The sources are parameters: the published contexts in production, contexts of
the same events on private topics in tests and benchmarks (`Sources.prefixed`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from immunreg.contracts import (
    administration,
    booking,
    certificates,
    inventory,
    registration,
    supply,
)
from immunreg.contracts.envelope import Context, Envelope, Event
from immunreg.eventstore.database import Connection
from immunreg.messaging.reactions import Handler, Reactions

from .projector import Batch, Projector

Record = Callable[[Batch, Any, Envelope], None]


@dataclass(frozen=True)
class Sources:
    """The contexts (topics) a read model is built from."""

    registration: Context
    booking: Context
    inventory: Context
    administration: Context
    certificates: Context
    supply: Context

    @classmethod
    def published(cls) -> Sources:
        """The real topics, `<context>.events.v1`."""
        return cls(
            registration.CONTEXT,
            booking.CONTEXT,
            inventory.CONTEXT,
            administration.CONTEXT,
            certificates.CONTEXT,
            supply.CONTEXT,
        )

    @classmethod
    def prefixed(cls, prefix: str) -> Sources:
        """The same events on private topics `<prefix><context>.events.v1`."""
        if not prefix:
            return cls.published()
        published = cls.published()
        return cls(
            *(
                c.renamed(f"{prefix}{c.name}")
                for c in (
                    published.registration,
                    published.booking,
                    published.inventory,
                    published.administration,
                    published.certificates,
                    published.supply,
                )
            )
        )

    def prefix(self) -> str:
        """The prefix these sources were made with (`prefixed`): what another process
        passes to `prefixed` to read the same topics."""
        prefix = self.registration.name.removesuffix(registration.CONTEXT.name)
        if Sources.prefixed(prefix).topics() != self.topics():
            raise ValueError("these sources are not the published contexts under one prefix")
        return prefix

    def contexts(self) -> list[Context]:
        """Every source context."""
        return [
            self.registration,
            self.booking,
            self.inventory,
            self.administration,
            self.certificates,
            self.supply,
        ]

    def topics(self) -> list[str]:
        """Every source topic."""
        return [c.topic for c in self.contexts()]


def recorders(sources: Sources) -> list[tuple[Context, type[Event], Record]]:
    """Which Batch method records which event (everything else is only noted)."""
    r, b, i, a, c, s = (
        sources.registration,
        sources.booking,
        sources.inventory,
        sources.administration,
        sources.certificates,
        sources.supply,
    )
    return [
        (r, registration.CitizenRegistered, Batch.registration),
        (r, registration.RegistrationWithdrawn, Batch.registration),
        (r, registration.CitizenErased, Batch.registration),
        (b, booking.SiteDefined, Batch.site),
        (b, booking.SiteCapacityChanged, Batch.site_day),
        (b, booking.SlotsReserved, Batch.slots_changed),
        (b, booking.SlotsReleased, Batch.slots_changed),
        (b, booking.AppointmentBooked, Batch.appointment),
        (b, booking.AppointmentRescheduled, Batch.appointment),
        (b, booking.AppointmentCancelled, Batch.appointment),
        (b, booking.AppointmentAttended, Batch.appointment),
        (b, booking.AppointmentMissed, Batch.appointment),
        (i, inventory.StockLevelChanged, Batch.stock_level),
        (i, inventory.DosesWasted, Batch.wasted),
        (i, inventory.OpenedVialExpired, Batch.wasted),
        (i, inventory.ShipmentDispatched, Batch.shipment),
        (i, inventory.ShipmentReceived, Batch.shipment),
        (a, administration.DoseAdministered, Batch.dose),
        (a, administration.DoseCorrected, Batch.dose),
        (a, administration.DoseVoided, Batch.dose),
        (a, administration.AdverseEventReported, Batch.adverse_event),
        (c, certificates.CertificateIssued, Batch.certificate),
        (c, certificates.CertificateRevoked, Batch.certificate),
        (s, supply.ContractRecorded, Batch.contract),
        (s, supply.DeliveryReceived, Batch.contract),
    ]


def _handler(projector: Projector, record: Record | None) -> Handler:
    async def handle(conn: Connection, event: Event, envelope: Envelope) -> None:
        batch = projector.batch
        batch.noted(event, envelope)
        if record is not None:
            record(batch, event, envelope)

    return handle


def build_reactions(sources: Sources, *, replay: bool = False) -> Reactions:
    """Fresh reactions (with their own projector) for one consumer of `sources`
    (`replay=True`: a rebuild's, see Projector)."""
    projector = Projector(replay=replay)
    reactions = Reactions(batch=projector)
    named = {(ctx.name, event_type): rec for ctx, event_type, rec in recorders(sources)}
    for ctx in sources.contexts():
        for event_type in ctx.event_types.values():
            reactions.add(ctx, event_type, _handler(projector, named.get((ctx.name, event_type))))
    return reactions
