"""What administration does when other contexts' events arrive: keep its read models.

The consumer group is the service's schema; every handler runs in the consumer's
transaction (write only through `conn`) and redeliveries are filtered for it.

- registration: CitizenRegistered (birth date, sex, municipality; never names),
  RegistrationWithdrawn (the citizen may still be vaccinated), CitizenErased
  (birth date, sex and municipality dropped; no new record for them);
- inventory: LotReceived (the lot's product and expiry, and that it is at its
  location), ShipmentReceived (the lot is at the destination), LotRecalled,
  LotExpired. The per-location ledger events repeat these facts and are skipped;
- booking: SiteDefined (a site's municipality, carried on DoseAdministered).
  Appointment events are not followed: an appointment id on a dose is carried as
  given (booking matches it to its own appointment).
"""

from __future__ import annotations

from immunreg.contracts import booking, inventory, registration
from immunreg.contracts.booking import SiteDefined
from immunreg.contracts.envelope import Envelope
from immunreg.contracts.inventory import LotExpired, LotRecalled, LotReceived, ShipmentReceived
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    RegistrationWithdrawn,
)
from immunreg.eventstore.database import Connection
from immunreg.messaging.reactions import Reactions

from . import readmodel

reactions = Reactions()


@reactions.on(registration.CONTEXT, CitizenRegistered)
async def citizen_registered(
    conn: Connection, event: CitizenRegistered, envelope: Envelope
) -> None:
    await readmodel.citizen_registered(
        conn,
        event.citizen_id,
        envelope.version,
        birth_date=event.birth_date,
        sex=event.sex,
        municipality_code=event.municipality_code,
    )


@reactions.on(registration.CONTEXT, RegistrationWithdrawn)
async def registration_withdrawn(
    conn: Connection, event: RegistrationWithdrawn, envelope: Envelope
) -> None:
    await readmodel.citizen_withdrawn(conn, event.citizen_id, envelope.version)


@reactions.on(registration.CONTEXT, CitizenErased)
async def citizen_erased(conn: Connection, event: CitizenErased, envelope: Envelope) -> None:
    await readmodel.citizen_erased(conn, event.citizen_id, envelope.version)


@reactions.on(inventory.CONTEXT, LotReceived)
async def lot_received(conn: Connection, event: LotReceived, envelope: Envelope) -> None:
    await readmodel.lot_described(conn, event.lot_number, event.product_code, event.expiry_date)
    await readmodel.lot_at_site(
        conn, event.location_id, event.lot_number, event.product_code, envelope.occurred_at
    )


@reactions.on(inventory.CONTEXT, ShipmentReceived)
async def shipment_received(conn: Connection, event: ShipmentReceived, envelope: Envelope) -> None:
    if event.vials_received > 0:
        await readmodel.lot_at_site(
            conn, event.to_location, event.lot_number, event.product_code, envelope.occurred_at
        )


@reactions.on(inventory.CONTEXT, LotRecalled)
async def lot_recalled(conn: Connection, event: LotRecalled, envelope: Envelope) -> None:
    await readmodel.lot_recalled(
        conn, event.lot_number, event.product_code, event.reason, envelope.occurred_at
    )


@reactions.on(inventory.CONTEXT, LotExpired)
async def lot_expired(conn: Connection, event: LotExpired, envelope: Envelope) -> None:
    await readmodel.lot_expired(conn, event.lot_number, event.product_code, event.expiry_date)


@reactions.on(booking.CONTEXT, SiteDefined)
async def site_defined(conn: Connection, event: SiteDefined, envelope: Envelope) -> None:
    await readmodel.site_defined(conn, event.site_id, event.name, event.municipality_code)
