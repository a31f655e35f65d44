"""Units of work that take and free slots: every change to an appointment, its SiteDay
and the read models, on one connection inside the caller's transaction.

Callers run these inside `store.transact` (HTTP, scheduling runs) or inside the
consumer's transaction (reactions); a ConcurrencyConflict rolls the whole unit back and
it is decided again.

Invariants and how they hold under any concurrency:

- No slot is overbooked: SlotsReserved is appended to `siteday-<site>-<day>` at the
  version the free count was computed from (domain.py).
- One open appointment per citizen: the appointment's row goes in with
  `ON CONFLICT DO NOTHING` on the partial unique index of open appointments; a citizen
  someone else booked meanwhile is simply not booked again ("already_booked").
- No more bookings of a product at a site than its stock: the `site_stock` row is
  locked (FOR UPDATE) before the count of open appointments of that product at that
  site from today on is subtracted from the doses available, so bookings of one product
  at one site queue there. Missing row = no stock.
- A site's default capacity cannot change under a booking: bookings hold a shared
  advisory lock on the site, a redefinition the exclusive one.

Lock order, to keep deadlocks out: site lock, stock row, claims (citizen ids sorted),
then the SiteDay append, then appointment streams (fresh ids). A deadlock that still
happens (e.g. with a consumer batch) aborts the unit, and callers treat it as not done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import msgspec

from immunreg.contracts.envelope import Metadata, new_event_id
from immunreg.domain import Conflict, Loaded, NotFound, Outcome
from immunreg.eventstore.database import Connection
from immunreg.eventstore.locks import lock_for_transaction
from immunreg.eventstore.store import EventStore

from .domain import (
    APPOINTMENT,
    SITE,
    SITEDAY,
    AppointmentState,
    Attend,
    Book,
    Cancel,
    Miss,
    Release,
    Reschedule,
    Reserve,
    SiteState,
    appointment_stream,
    decide_appointment,
    site_stream,
    siteday_stream,
)

ALREADY_BOOKED = "already_booked"
SLOT_TAKEN = "slot_taken"
NO_STOCK = "no_stock"


class BookingRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One citizen to book into the slot a reservation is for."""

    citizen_id: str
    dose_number: int
    reason: str
    booster: bool = False
    run_id: str | None = None


@dataclass
class Reservation:
    """Who got a slot (with the new appointment id) and who did not, and why."""

    booked: list[tuple[BookingRequest, str]] = field(default_factory=list)
    refused: list[tuple[BookingRequest, str]] = field(default_factory=list)


_CLAIM = """
INSERT INTO appointments (appointment_id, citizen_id, site_id, municipality_code, day,
                          product_code, dose_number, booster, status, reason, run_id)
SELECT a, c, $3, $4, $5, $6, n, b, 'booked', r, ru
FROM unnest($1::text[], $2::text[], $7::int[], $8::bool[], $9::text[], $10::text[])
     AS x(a, c, n, b, r, ru)
ON CONFLICT (citizen_id) WHERE status = 'booked' DO NOTHING
RETURNING citizen_id
"""

_OPEN_OF_PRODUCT = """
SELECT count(*) FROM appointments
WHERE site_id = $1 AND product_code = $2 AND status = 'booked' AND day >= $3
"""


class Slots:
    """The slot units of work of one event store."""

    def __init__(self, store: EventStore, metadata: Metadata | None = None) -> None:
        self.store = store
        self.metadata = metadata

    async def site(self, conn: Connection, site_id: str, *, exclusive: bool = False) -> SiteState:
        """The site's definition, holding the site lock (shared, or exclusive to redefine)."""
        await lock_for_transaction(conn, f"booking-site:{site_id}", shared=not exclusive)
        loaded = await self.store.load_state(SITE, site_stream(site_id), conn)
        return loaded.state

    async def stock_budget(
        self, conn: Connection, site_id: str, product_code: str, today: date
    ) -> int:
        """Doses of a product that may still be booked at a site (locks its stock row)."""
        available = await conn.fetchval(
            "SELECT doses_available FROM site_stock WHERE site_id = $1 AND product_code = $2 "
            "FOR UPDATE",
            site_id,
            product_code,
        )
        if available is None:
            return 0
        booked = await conn.fetchval(_OPEN_OF_PRODUCT, site_id, product_code, today)
        return max(int(available) - int(booked), 0)

    async def reserve(
        self,
        conn: Connection,
        *,
        site_id: str,
        day: date,
        product_code: str,
        requests: Sequence[BookingRequest],
        today: date,
    ) -> Reservation:
        """Book as many of `requests` (best first) as the SiteDay and the stock allow."""
        result = Reservation()
        site = await self.site(conn, site_id)
        if not site.defined or site.definition is None:
            raise NotFound("site_not_found", f"no site {site_id}")
        budget = await self.stock_budget(conn, site_id, product_code, today)
        stream = siteday_stream(site_id, day)
        siteday = await self.store.load_state(SITEDAY, stream, conn)
        default = site.daily_capacity()
        slots_free = siteday.state.free(product_code, default)
        free = min(slots_free, budget)
        pending = list(requests)
        taken: list[tuple[BookingRequest, str]] = []
        while pending and len(taken) < free:
            batch, pending = pending[: free - len(taken)], pending[free - len(taken) :]
            ids = {r.citizen_id: str(new_event_id()) for r in batch}
            claimed = await self._claim(
                conn, site=site, day=day, product_code=product_code, batch=batch, ids=ids
            )
            for request in batch:
                if request.citizen_id in claimed:
                    taken.append((request, ids[request.citizen_id]))
                else:
                    result.refused.append((request, ALREADY_BOOKED))
        why = NO_STOCK if budget < slots_free else SLOT_TAKEN
        result.refused += [(r, why) for r in pending]
        if not taken:
            return result
        await self.store.decide_and_append(
            conn,
            SITEDAY,
            stream,
            siteday,
            Reserve(
                site_id=site_id,
                day=day,
                product_code=product_code,
                appointment_ids=[appointment_id for _, appointment_id in taken],
                default_capacity=default,
            ),
            metadata=self.metadata,
        )
        assert site.definition is not None
        for request, appointment_id in taken:
            await self.store.execute_in(
                conn,
                APPOINTMENT,
                appointment_stream(appointment_id),
                Book(
                    appointment_id=appointment_id,
                    citizen_id=request.citizen_id,
                    site_id=site_id,
                    municipality_code=site.definition.municipality_code,
                    day=day,
                    product_code=product_code,
                    dose_number=request.dose_number,
                    booster=request.booster,
                    reason=request.reason,
                    run_id=request.run_id,
                ),
                metadata=self.metadata,
            )
        result.booked = taken
        return result

    async def _claim(
        self,
        conn: Connection,
        *,
        site: SiteState,
        day: date,
        product_code: str,
        batch: list[BookingRequest],
        ids: dict[str, str],
    ) -> set[str]:
        assert site.definition is not None
        ordered = sorted(batch, key=lambda r: r.citizen_id)  # one lock order for every writer
        rows = await conn.fetch(
            _CLAIM,
            [ids[r.citizen_id] for r in ordered],
            [r.citizen_id for r in ordered],
            site.definition.site_id,
            site.definition.municipality_code,
            day,
            product_code,
            [r.dose_number for r in ordered],
            [r.booster for r in ordered],
            [r.reason for r in ordered],
            [r.run_id for r in ordered],
        )
        return {row["citizen_id"] for row in rows}

    async def appointment(self, conn: Connection, appointment_id: str) -> Loaded[AppointmentState]:
        return await self.store.load_state(APPOINTMENT, appointment_stream(appointment_id), conn)

    async def _release(
        self,
        conn: Connection,
        site_id: str,
        day: date,
        *,
        product_code: str,
        ids: list[str],
        why: str,
    ) -> None:
        stream = siteday_stream(site_id, day)
        await self.store.execute_in(
            conn,
            SITEDAY,
            stream,
            Release(
                site_id=site_id, day=day, product_code=product_code, appointment_ids=ids, reason=why
            ),
            metadata=self.metadata,
        )

    async def cancel(
        self, conn: Connection, appointment_id: str, reason: str
    ) -> Outcome[AppointmentState]:
        """Cancel an open appointment and free its slot (cancelling twice changes nothing)."""
        loaded = await self.appointment(conn, appointment_id)
        outcome = await self.store.decide_and_append(
            conn,
            APPOINTMENT,
            appointment_stream(appointment_id),
            loaded,
            Cancel(reason=reason),
            metadata=self.metadata,
        )
        if outcome.events:
            state = loaded.state
            assert state.day is not None
            await self._release(
                conn,
                state.site_id,
                state.day,
                product_code=state.product_code,
                ids=[appointment_id],
                why=reason,
            )
            await conn.execute(
                "UPDATE appointments SET status = 'cancelled', status_reason = $2, "
                "updated_at = now() WHERE appointment_id = $1",
                appointment_id,
                reason,
            )
        return outcome

    async def reschedule(
        self,
        conn: Connection,
        appointment_id: str,
        *,
        site_id: str,
        day: date,
        today: date,
    ) -> Outcome[AppointmentState]:
        """Move an open appointment to a free slot (409 slot_full / no_stock otherwise)."""
        loaded = await self.appointment(conn, appointment_id)
        state = loaded.state
        target = await self.site(conn, site_id)
        if not target.defined or target.definition is None:
            raise NotFound("site_not_found", f"no site {site_id}")
        command = Reschedule(
            site_id=site_id, municipality_code=target.definition.municipality_code, day=day
        )
        decide_appointment(state, command)  # refuse before touching any SiteDay
        assert state.day is not None
        product = state.product_code
        if site_id != state.site_id and await self.stock_budget(conn, site_id, product, today) < 1:
            raise Conflict("no_stock", f"{site_id} has no stock of {product} left to book")
        target_stream = siteday_stream(site_id, day)
        source_stream = siteday_stream(state.site_id, state.day)
        for stream in sorted((target_stream, source_stream)):  # one append order for all
            if stream == target_stream:
                siteday = await self.store.load_state(SITEDAY, target_stream, conn)
                if siteday.state.free(product, target.daily_capacity()) < 1:
                    raise Conflict(
                        "slot_full", f"{site_id} has no free slot of {product} on {day.isoformat()}"
                    )
                await self.store.decide_and_append(
                    conn,
                    SITEDAY,
                    target_stream,
                    siteday,
                    Reserve(
                        site_id=site_id,
                        day=day,
                        product_code=product,
                        appointment_ids=[appointment_id],
                        default_capacity=target.daily_capacity(),
                    ),
                    metadata=self.metadata,
                )
            else:
                await self._release(
                    conn,
                    state.site_id,
                    state.day,
                    product_code=product,
                    ids=[appointment_id],
                    why="rescheduled",
                )
        outcome = await self.store.decide_and_append(
            conn,
            APPOINTMENT,
            appointment_stream(appointment_id),
            loaded,
            command,
            metadata=self.metadata,
        )
        await conn.execute(
            "UPDATE appointments SET site_id = $2, municipality_code = $3, day = $4, "
            "updated_at = now() WHERE appointment_id = $1",
            appointment_id,
            site_id,
            target.definition.municipality_code,
            day,
        )
        return outcome

    async def attend(
        self, conn: Connection, appointment_id: str, dose_id: str
    ) -> Outcome[AppointmentState]:
        """The citizen came: the dose was recorded (also after a no-show was marked)."""
        outcome = await self.store.execute_in(
            conn,
            APPOINTMENT,
            appointment_stream(appointment_id),
            Attend(dose_id=dose_id),
            metadata=self.metadata,
        )
        if outcome.events:
            await conn.execute(
                "UPDATE appointments SET status = 'attended', status_reason = $2, "
                "updated_at = now() WHERE appointment_id = $1",
                appointment_id,
                dose_id,
            )
        return outcome

    async def miss(self, conn: Connection, appointment_id: str) -> Outcome[AppointmentState]:
        """The day ended without the citizen: a no-show; the citizen waits again."""
        outcome = await self.store.execute_in(
            conn,
            APPOINTMENT,
            appointment_stream(appointment_id),
            Miss(),
            metadata=self.metadata,
        )
        if outcome.events:
            await conn.execute(
                "UPDATE appointments SET status = 'missed', updated_at = now() "
                "WHERE appointment_id = $1",
                appointment_id,
            )
        return outcome
