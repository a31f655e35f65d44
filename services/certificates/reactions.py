"""What certificates does when other contexts' events arrive (one table, one place).

registration.events.v1
- CitizenRegistered, ContactDetailsChanged: keep the birth date and the sealed
  personal data; issue certificates that were waiting for them.
- PersonalDataKeyGranted (recipient `certificates`): keep the data key (still
  wrapped for this service); issue what was waiting for it.
- CitizenErased: delete the key and the names, revoke the citizen's
  certificates (`citizen_erased`) and delete their signed payloads: a
  certificate nobody can account for any more must not keep verifying, and
  the payload is personal data. The revocation list keeps only UVCI hashes.

administration.events.v1
- DoseAdministered: issue the dose's certificate (pending until the names arrive).
- DoseCorrected: when what the certificate says changed, revoke it and issue
  one that `supersedes` it; a correction that changes nothing in the DCC
  (e.g. the time of day) keeps it.
- DoseVoided: revoke it (`dose_voided`).

inventory.events.v1
- LotRecalled: revoke the certificate of every dose from the lot
  (`lot_recalled`); doses from it that arrive later get none.

Handlers get only the consumer's connection; they reach the app's office
through an OfficeSlot its start-up fills (as inventory's LedgerSlot).
"""

from __future__ import annotations

from immunreg.contracts import administration, inventory, registration
from immunreg.contracts.administration import DoseAdministered, DoseCorrected, DoseVoided
from immunreg.contracts.envelope import Envelope
from immunreg.contracts.inventory import LotRecalled
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    ContactDetailsChanged,
    PersonalDataKeyGranted,
)
from immunreg.eventstore.database import Connection
from immunreg.messaging.reactions import Reactions

from .office import CertificateOffice


class OfficeSlot:
    """The running app's office, for handlers that only receive a connection."""

    def __init__(self) -> None:
        self._office: CertificateOffice | None = None

    def fill(self, office: CertificateOffice | None) -> None:
        """Set (or clear, with None) the office handlers use."""
        self._office = office

    def __call__(self) -> CertificateOffice:
        if self._office is None:
            # A ConnectionError makes the consumer roll the batch back and read it
            # again later, instead of dead-lettering a message that is fine.
            raise ConnectionError("the certificate office has not started yet")
        return self._office


def build_reactions(office: OfficeSlot) -> Reactions:
    """Certificates' reactions, bound to the office of one app."""
    reactions = Reactions()

    @reactions.on(registration.CONTEXT, CitizenRegistered)
    async def citizen_registered(
        conn: Connection, event: CitizenRegistered, envelope: Envelope
    ) -> None:
        await office().citizen_registered(conn, event, envelope)

    @reactions.on(registration.CONTEXT, ContactDetailsChanged)
    async def contact_changed(
        conn: Connection, event: ContactDetailsChanged, envelope: Envelope
    ) -> None:
        await office().contact_changed(conn, event, envelope)

    @reactions.on(registration.CONTEXT, PersonalDataKeyGranted)
    async def key_granted(
        conn: Connection, event: PersonalDataKeyGranted, envelope: Envelope
    ) -> None:
        await office().key_granted(conn, event, envelope)

    @reactions.on(registration.CONTEXT, CitizenErased)
    async def citizen_erased(conn: Connection, event: CitizenErased, envelope: Envelope) -> None:
        await office().citizen_erased(conn, event, envelope)

    @reactions.on(administration.CONTEXT, DoseAdministered)
    async def dose_administered(
        conn: Connection, event: DoseAdministered, envelope: Envelope
    ) -> None:
        await office().dose_recorded(conn, event, envelope)

    @reactions.on(administration.CONTEXT, DoseCorrected)
    async def dose_corrected(conn: Connection, event: DoseCorrected, envelope: Envelope) -> None:
        await office().dose_recorded(conn, event, envelope)

    @reactions.on(administration.CONTEXT, DoseVoided)
    async def dose_voided(conn: Connection, event: DoseVoided, envelope: Envelope) -> None:
        await office().dose_voided(conn, event, envelope)

    @reactions.on(inventory.CONTEXT, LotRecalled)
    async def lot_recalled(conn: Connection, event: LotRecalled, envelope: Envelope) -> None:
        await office().lot_recalled(conn, event, envelope)

    return reactions
