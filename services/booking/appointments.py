"""Booking's appointment units of work, shared by its commands and its reactions.

Each changes an appointment, its SiteDay and the read models on one connection inside
the caller's transaction (a command's, or the consumer's); a ConcurrencyConflict rolls
the whole unit back and it is decided again. The invariants they keep, and the lock
order, are described in handlers.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from immunreg.contracts.envelope import Metadata, new_id_text
from immunreg.domain import Loaded, NotFound, Outcome
from immunreg.eventstore.database import Connection
from immunreg.eventstore.locks import lock_for_transaction
from immunreg.eventstore.store import EventStore
from immunreg.structs import Struct

from . import readmodel
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
    needs_stock,
    require_free_slot,
    require_stock,
    site_stream,
    siteday_stream,
)
from .eligibility import NO_STOCK, SLOT_TAKEN
from .readmodel import Claim

log = logging.getLogger(__name__)

ALREADY_BOOKED = "already_booked"


class BookingRequest(Struct):
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


async def site_for_booking(
    store: EventStore, conn: Connection, site_id: str, *, exclusive: bool = False
) -> SiteState:
    """The site's definition, holding the site lock (shared, or exclusive to redefine)."""
    await lock_for_transaction(conn, f"booking-site:{site_id}", shared=not exclusive)
    loaded = await store.load_state(SITE, site_stream(site_id), conn)
    return loaded.state


async def reserve(
    store: EventStore,
    conn: Connection,
    *,
    site_id: str,
    day: date,
    product_code: str,
    requests: Sequence[BookingRequest],
    today: date,
    metadata: Metadata | None = None,
) -> Reservation:
    """Book as many of `requests` (best first) as the SiteDay and the stock allow."""
    (result,) = await reserve_days(
        store,
        conn,
        site_id=site_id,
        product_code=product_code,
        days=[(day, requests)],
        today=today,
        metadata=metadata,
    )
    return result


async def reserve_days(
    store: EventStore,
    conn: Connection,
    *,
    site_id: str,
    product_code: str,
    days: Sequence[tuple[date, Sequence[BookingRequest]]],
    today: date,
    metadata: Metadata | None = None,
) -> list[Reservation]:
    """Book one product at one site on several days (in the order given, each day's
    requests best first) as each SiteDay and the site's stock of the product allow; one
    Reservation per day. The stock is read (and its row locked) once, and every new
    appointment stream is started with one write, so a scheduling run pays per
    (site, product), not per booking."""
    site = await site_for_booking(store, conn, site_id)
    if not site.defined or site.definition is None:
        raise NotFound("site_not_found", f"no site {site_id}")
    municipality_code = site.definition.municipality_code
    budget = await readmodel.stock_left(conn, site_id, product_code, today)
    default = site.daily_capacity()
    streams = [siteday_stream(site_id, day) for day, _ in days]
    sitedays = await store.load_states(SITEDAY, streams, conn)
    free = [sitedays[s].state.free(product_code, default) for s in streams]
    pending = [list(requests) for _, requests in days]
    results = [Reservation() for _ in days]
    # Offer each day as many of its next requests as it has slots (and the stock
    # allows, earlier days first), claim them all in one statement; a citizen booked
    # elsewhere meanwhile leaves a slot for the day's next request: offer again.
    while True:
        left = budget - sum(len(r.booked) for r in results)
        offers: list[tuple[int, BookingRequest]] = []
        for i, result in enumerate(results):
            n = max(min(free[i] - len(result.booked), left, len(pending[i])), 0)
            offers += [(i, r) for r in pending[i][:n]]
            pending[i] = pending[i][n:]
            left -= n
        if not offers:
            break
        ids = {r.citizen_id: new_id_text() for _, r in offers}
        claimed = await readmodel.claim_appointments(
            conn,
            [
                Claim(
                    appointment_id=ids[r.citizen_id],
                    citizen_id=r.citizen_id,
                    day=days[i][0],
                    dose_number=r.dose_number,
                    booster=r.booster,
                    reason=r.reason,
                    run_id=r.run_id,
                )
                # one lock order for every writer
                for i, r in sorted(offers, key=lambda offer: offer[1].citizen_id)
            ],
            site_id=site_id,
            municipality_code=municipality_code,
            product_code=product_code,
        )
        for i, request in offers:
            if request.citizen_id in claimed:
                results[i].booked.append((request, ids[request.citizen_id]))
            else:
                results[i].refused.append((request, ALREADY_BOOKED))
        if len(claimed) == len(offers):
            break  # every offer held: nothing freed for another round
    reserved = []
    for i, ((day, _), stream) in enumerate(zip(days, streams, strict=True)):
        result = results[i]
        # Slots still free on a day whose requests were not all booked: the stock ran out.
        why = NO_STOCK if len(result.booked) < free[i] else SLOT_TAKEN
        result.refused += [(r, why) for r in pending[i]]
        if not result.booked:
            continue
        reserved.append(
            store.plan(
                SITEDAY,
                stream,
                sitedays[stream],
                Reserve(
                    site_id=site_id,
                    day=day,
                    product_code=product_code,
                    appointment_ids=[appointment_id for _, appointment_id in result.booked],
                    default_capacity=default,
                ),
                metadata=metadata,
            )
        )
    # Every day's SiteDay with one write, in date order (the lock order).
    await store.write_planned_many(conn, SITEDAY, reserved)
    # Fresh ids: every appointment stream starts here, all of them in one write.
    await store.start_streams(
        conn,
        APPOINTMENT,
        [
            (
                appointment_stream(appointment_id),
                Book(
                    appointment_id=appointment_id,
                    citizen_id=request.citizen_id,
                    site_id=site_id,
                    municipality_code=municipality_code,
                    day=day,
                    product_code=product_code,
                    dose_number=request.dose_number,
                    booster=request.booster,
                    reason=request.reason,
                    run_id=request.run_id,
                ),
            )
            for (day, _), result in zip(days, results, strict=True)
            for request, appointment_id in result.booked
        ],
        metadata=metadata,
    )
    return results


async def _load_appointment(
    store: EventStore, conn: Connection, appointment_id: str
) -> Loaded[AppointmentState]:
    return await store.load_state(APPOINTMENT, appointment_stream(appointment_id), conn)


async def _release(
    store: EventStore,
    conn: Connection,
    site_id: str,
    day: date,
    *,
    product_code: str,
    ids: list[str],
    why: str,
    metadata: Metadata | None,
) -> None:
    await store.execute_in(
        conn,
        SITEDAY,
        siteday_stream(site_id, day),
        Release(
            site_id=site_id, day=day, product_code=product_code, appointment_ids=ids, reason=why
        ),
        metadata=metadata,
    )


async def cancel_appointment(
    store: EventStore,
    conn: Connection,
    appointment_id: str,
    reason: str,
    *,
    metadata: Metadata | None = None,
) -> Outcome[AppointmentState]:
    """Cancel an open appointment and free its slot (cancelling twice changes nothing)."""
    loaded = await _load_appointment(store, conn, appointment_id)
    outcome = await store.decide_and_append(
        conn,
        APPOINTMENT,
        appointment_stream(appointment_id),
        loaded,
        Cancel(reason=reason),
        metadata=metadata,
    )
    if outcome.events:
        state = loaded.state
        assert state.day is not None
        await _release(
            store,
            conn,
            state.site_id,
            state.day,
            product_code=state.product_code,
            ids=[appointment_id],
            why=reason,
            metadata=metadata,
        )
        await readmodel.appointment_cancelled(conn, appointment_id, reason)
    return outcome


async def move_appointment(
    store: EventStore,
    conn: Connection,
    appointment_id: str,
    *,
    site_id: str,
    day: date,
    today: date,
    metadata: Metadata | None = None,
) -> Outcome[AppointmentState]:
    """Move an open appointment to a free slot (409 slot_full / no_stock otherwise)."""
    loaded = await _load_appointment(store, conn, appointment_id)
    state = loaded.state
    target = await site_for_booking(store, conn, site_id)
    if not target.defined or target.definition is None:
        raise NotFound("site_not_found", f"no site {site_id}")
    command = Reschedule(
        site_id=site_id, municipality_code=target.definition.municipality_code, day=day
    )
    decide_appointment(state, command)  # refuse before touching any SiteDay
    assert state.day is not None
    product = state.product_code
    if needs_stock(state, site_id):
        require_stock(site_id, product, await readmodel.stock_left(conn, site_id, product, today))
    target_stream = siteday_stream(site_id, day)
    source_stream = siteday_stream(state.site_id, state.day)
    for stream in sorted((target_stream, source_stream)):  # one append order for all
        if stream == target_stream:
            siteday = await store.load_state(SITEDAY, target_stream, conn)
            require_free_slot(siteday.state, site_id, day, product, target.daily_capacity())
            await store.decide_and_append(
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
                metadata=metadata,
            )
        else:
            await _release(
                store,
                conn,
                state.site_id,
                state.day,
                product_code=product,
                ids=[appointment_id],
                why="rescheduled",
                metadata=metadata,
            )
    outcome = await store.decide_and_append(
        conn,
        APPOINTMENT,
        appointment_stream(appointment_id),
        loaded,
        command,
        metadata=metadata,
    )
    await readmodel.appointment_moved(
        conn, appointment_id, site_id, target.definition.municipality_code, day
    )
    return outcome


async def attend(
    store: EventStore,
    conn: Connection,
    appointment_id: str,
    dose_id: str,
    *,
    metadata: Metadata | None = None,
) -> Outcome[AppointmentState]:
    """The citizen came: the dose was recorded (also after a no-show was marked)."""
    outcome = await store.execute_in(
        conn,
        APPOINTMENT,
        appointment_stream(appointment_id),
        Attend(dose_id=dose_id),
        metadata=metadata,
    )
    if outcome.events:
        await readmodel.appointment_attended(conn, appointment_id, dose_id)
    return outcome


async def miss(
    store: EventStore, conn: Connection, appointment_id: str, *, metadata: Metadata | None = None
) -> Outcome[AppointmentState]:
    """The day ended without the citizen: a no-show; the citizen waits again."""
    outcome = await store.execute_in(
        conn, APPOINTMENT, appointment_stream(appointment_id), Miss(), metadata=metadata
    )
    if outcome.events:
        await readmodel.appointment_missed(conn, appointment_id)
    return outcome
