"""What inventory does when other contexts' events arrive.

- DoseAdministered: the dose is taken from that lot's stock at that site
  (opening a sealed vial if none is open); when the count cannot account for
  it, a StockDiscrepancyDetected is recorded instead - the dose stands.
- DoseVoided and DoseCorrected change nothing here: a record entered in error
  does not put a dose back into a vial (the vial was opened and its usable
  time runs anyway). Stock is reconciled by recording waste, not by editing
  consumption. They are not subscribed to, so the consumer skips them.

Handlers get only the consumer's connection; they reach the running app's
Ledger through a LedgerSlot that the app's start-up fills (services/inventory/app.py).
A handler runs in the consumer's savepoint: a ConcurrencyConflict (another
writer on the same stream) is re-decided by the consumer's own retries, and
redeliveries are filtered by the consumer (processed_events) and again by the
Stock itself (a dose id is counted once).
"""

from __future__ import annotations

from immunreg.contracts import administration
from immunreg.contracts.administration import DoseAdministered
from immunreg.contracts.envelope import Envelope
from immunreg.eventstore.database import Connection
from immunreg.messaging.reactions import Reactions

from .ledger import Ledger


class LedgerSlot:
    """The running app's Ledger, for handlers that only receive a connection."""

    def __init__(self) -> None:
        self._ledger: Ledger | None = None

    def fill(self, ledger: Ledger | None) -> None:
        """Set (or clear, with None) the ledger handlers use."""
        self._ledger = ledger

    def __call__(self) -> Ledger:
        if self._ledger is None:
            # A ConnectionError makes the consumer roll the batch back and read it
            # again later, instead of dead-lettering a message that is fine.
            raise ConnectionError("the inventory ledger has not started yet")
        return self._ledger


def build_reactions(ledger: LedgerSlot) -> Reactions:
    """Inventory's reactions, bound to the ledger of one app."""
    reactions = Reactions()

    @reactions.on(administration.CONTEXT, DoseAdministered)
    async def dose_administered(
        conn: Connection, event: DoseAdministered, envelope: Envelope
    ) -> None:
        await ledger().consume(conn, event, envelope)

    return reactions
