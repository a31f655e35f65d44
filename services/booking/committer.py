"""A scheduling run's committing side: the planner's bookings, committed per (site,
product) while the plan goes on (planning.Sink).

Bookings gather per (site, product). A group is committed once it holds a share of a
transaction's bookings (COMMIT_BATCH / COMMIT_SHARE), or a smaller one (COMMIT_BATCH /
IDLE_SHARE) while fewer sites than COMMIT_CONCURRENCY are committing (the committer
would idle otherwise: at the start of a plan, or when every group is small), or
whatever it holds once the plan is done. A site commits its biggest group first, and
takes what the group holds once its turn comes (more gathers while it waits), in
transactions of up to COMMIT_BATCH bookings over one or more days (`_chunks`), each
through appointments.reserve_days. The rules of handlers.run_scheduler hold as when the whole
plan was committed at its end: one site's transactions one after another, sites side
by side, at most COMMIT_CONCURRENCY transactions at a time, the lock order of
reserve_days inside each. Proposals are final once the planner hands them on
(scheduler.planned), so what a run books does not depend on when each group commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import date

import asyncpg

from immunreg.contracts.envelope import Metadata
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.store import EventStore

from .appointments import ALREADY_BOOKED, BookingRequest, Reservation, reserve_days
from .config import BookingConfig
from .planning import Part
from .schemas import RunCounts

log = logging.getLogger(__name__)

# A group waits for this share of a transaction's bookings before it commits during
# the plan: smaller transactions cost more per booking, later ones overlap less.
COMMIT_SHARE = 4
# ... or for this one while the committer has room for another site (smaller: the
# per-transaction work, a SiteDay load and append, the stock count, adds up).
IDLE_SHARE = 8
# Failures of one batch's transaction that mean "not now", not "broken".
_NOT_NOW = (
    ConcurrencyConflict,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)

# Called with the run's counts after every committed batch (and once loaded).
Report = Callable[[RunCounts], Awaitable[None]]

Days = list[tuple[date, list[BookingRequest]]]


class Committer:
    """One pass of a run: takes a planner's parts (planning.Sink) and commits them;
    `run` returns the citizens to plan again (their slot was taken meanwhile)."""

    def __init__(
        self,
        store: EventStore,
        counts: RunCounts,
        *,
        today: date,
        config: BookingConfig,
        metadata: Metadata | None,
        report: Report,
        replanning: int | None = None,
    ) -> None:
        self.store = store
        self.counts = counts
        self.today = today
        self.size = max(config.commit_batch, 1)
        self.share = max(self.size // COMMIT_SHARE, 1)
        self.idle_share = max(self.size // IDLE_SHARE, 1)
        self.concurrency = max(config.commit_concurrency, 1)
        self.metadata = metadata
        self.report = report
        self.replanning = replanning  # how many citizens a replan asked for, or None
        self.gate = asyncio.Semaphore(self.concurrency)
        self.retry: list[str] = []
        self.waiting: Counter[str] = Counter()
        # site -> product -> day -> requests, in planner order (best citizens first)
        self.held: dict[str, dict[str, dict[date, list[BookingRequest]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list))
        )
        self.sizes: Counter[tuple[str, str]] = Counter()
        self.sites: dict[str, asyncio.Task[None]] = {}  # a site's committing task
        self.plan_done = False
        self.planned_at: float | None = None
        self.first_commit: float | None = None
        self.last_commit: float | None = None
        self._planning: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    # --- planning.Sink -----------------------------------------------------------------

    async def loaded(self, considered: int, seconds: float) -> None:
        _add(self.counts, "load", seconds)
        if self.replanning is None:
            self.counts.considered = considered
        else:  # the others were booked by someone else in between
            self.counts.booked_elsewhere += self.replanning - considered
        await self.report(self.counts)

    async def part(self, part: Part) -> None:
        self.waiting.update(part.waiting)
        touched = set()
        for b in part.bookings:
            self.held[b.site_id][b.product_code][b.day].append(b.request)
            self.sizes[(b.site_id, b.product_code)] += 1
            touched.add(b.site_id)
        for site_id in touched:
            if site_id not in self.sites and self._next(site_id) is not None:
                self._start(site_id)

    async def planned(self, seconds: float) -> None:
        _add(self.counts, "plan", seconds)
        self.planned_at = time.perf_counter()

    # --- the pass ----------------------------------------------------------------------

    async def run(self, planning: Awaitable[None]) -> list[str]:
        """Plan (`planning`, a planner handing its parts to this committer) and commit;
        the citizens whose booking did not fit any more."""
        self._planning = task = asyncio.ensure_future(planning)
        try:
            try:
                await task
            except asyncio.CancelledError:
                if self._error is not None:  # a commit failed and stopped the plan
                    raise self._error from None
                raise
            self.plan_done = True
            for site_id in list(self.held):
                if site_id not in self.sites:
                    self._start(site_id)
            while self.sites:
                await asyncio.gather(*self.sites.values())
        finally:
            pending = [t for t in (task, *self.sites.values()) if not t.done()]
            for t in pending:
                t.cancel()
            await asyncio.gather(task, *self.sites.values(), return_exceptions=True)
        if self.first_commit is not None and self.last_commit is not None:
            _add(self.counts, "commit", self.last_commit - self.first_commit)
            if self.planned_at is not None:
                _add(self.counts, "commit_after_plan", max(self.last_commit - self.planned_at, 0))
        return self.retry

    def _next(self, site_id: str) -> str | None:
        """The site's product to commit now: the one holding the most bookings, if that
        is enough (see the module doc) or the plan is done."""
        products = self.held.get(site_id)
        if not products:
            return None
        product = max(products, key=lambda p: self.sizes[(site_id, p)])
        size = self.sizes[(site_id, product)]
        others = len(self.sites) - (site_id in self.sites)
        enough = self.share if others >= self.concurrency else self.idle_share
        return product if self.plan_done or size >= enough else None

    def _start(self, site_id: str) -> None:
        self.sites[site_id] = asyncio.ensure_future(self._site(site_id))

    async def _site(self, site_id: str) -> None:
        """Commit what the site holds, one transaction after another, until it holds
        too little (more comes with the plan's next parts, and starts this again)."""
        try:
            while True:
                async with self.gate:
                    # Chosen once it is this site's turn: what gathered meanwhile goes too.
                    product = self._next(site_id)
                    if product is None:
                        del self.sites[site_id]  # at once: `part` starts it again
                        return
                    by_day = self.held[site_id].pop(product)
                    if not self.held[site_id]:
                        del self.held[site_id]
                    del self.sizes[(site_id, product)]
                    for days in _chunks(sorted(by_day.items()), self.size):
                        await self._commit(site_id, product, days)
        except Exception as error:
            self._error = error
            if self._planning is not None:
                self._planning.cancel()
            raise

    async def _commit(self, site_id: str, product: str, days: Days) -> None:
        async def work(conn: Connection) -> list[Reservation]:
            return await reserve_days(
                self.store,
                conn,
                site_id=site_id,
                product_code=product,
                days=days,
                today=self.today,
                metadata=self.metadata,
            )

        if self.first_commit is None:
            self.first_commit = time.perf_counter()
        try:
            reservations = await self.store.transact(work)
        except _NOT_NOW:
            log.warning("a booking batch was not committed; planning it again", exc_info=True)
            self.retry += [r.citizen_id for _, requests in days for r in requests]
            return
        finally:
            self.last_commit = time.perf_counter()
        counts = self.counts
        counts.batches_committed += 1
        for reservation in reservations:
            counts.booked += len(reservation.booked)
            for request, why in reservation.refused:
                if why == ALREADY_BOOKED:
                    counts.booked_elsewhere += 1
                else:
                    self.retry.append(request.citizen_id)
        await self.report(counts)


def _add(counts: RunCounts, phase: str, seconds: float) -> None:
    counts.timings[phase] = round(counts.timings.get(phase, 0.0) + seconds, 3)


def _chunks(days: Days, size: int) -> list[Days]:
    """Days in order, cut into transactions of at most `size` bookings (a day's requests
    are split only when they alone are more)."""
    size = max(size, 1)
    chunks: list[Days] = []
    current: Days = []
    count = 0
    for day, requests in days:
        for i in range(0, len(requests), size):
            piece = requests[i : i + size]
            if current and count + len(piece) > size:
                chunks.append(current)
                current, count = [], 0
            current.append((day, piece))
            count += len(piece)
    if current:
        chunks.append(current)
    return chunks
