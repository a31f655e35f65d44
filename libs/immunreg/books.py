"""Checking the books after a fault or a load day: what clients were told against what the
system holds.

For every write that got a 2xx: present exactly once in its owner's event store,
exactly once on Kafka, and in every read model downstream that should have it.
For every write that got no answer (a timeout, or 5xx until the client gave up):
present at most once. Then: every outbox empty, every dead-letter topic empty,
every event in every store published exactly once, and the projections equal to
a read model rebuilt from the topics.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from immunreg.contracts.topics import CONTEXT_NAMES, dlq_topic, events_topic
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.messaging.topics import read_topic
from immunreg.paths import REPO_ROOT

# Services that own an event store, and so a topic.
PUBLISHERS = CONTEXT_NAMES


@dataclass
class Ledger:
    """The clients' side, read from the traffic's JSONL file."""

    writes: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path) -> Ledger:
        lines = path.read_text().splitlines() if path.exists() else []
        return cls([w for w in map(json.loads, lines) if w["kind"] != "end"])

    def accepted(self, kind: str) -> list[dict[str, Any]]:
        return [w for w in self.writes if w["kind"] == kind and 200 <= (w["status"] or 0) < 300]

    def unanswered(self, kind: str) -> list[dict[str, Any]]:
        return [w for w in self.writes if w["kind"] == kind and w["status"] is None]


@dataclass
class Books:
    """What the check found: counts for the report, and every discrepancy."""

    accepted: int = 0
    found: int = 0
    unanswered: int = 0
    problems: list[str] = field(default_factory=list)

    def expect(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


async def check_books(
    ledger: Ledger,
    *,
    urls: dict[str, str],
    keys: Path,
    env: dict[str, str],
    schemas: Mapping[str, str] | None = None,
) -> Books:
    """Every check above; the result lists each discrepancy instead of stopping at the first.

    `schemas` names each service's schema where it is not the service's name (a stack
    started beside others, `IsolatedStack`)."""
    books = Books()
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    own = {**{s: s for s in (*PUBLISHERS, "projections")}, **(schemas or {})}
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        await _wait_drained(conn, urls, books, own)
        await _owners(conn, ledger, books, own)
        await _downstream(conn, ledger, books, own)
        stored = await _stored_event_ids(conn, own)
    finally:
        await conn.close()
    await _published_once(bootstrap, stored, books)
    await _dead_letters_empty(bootstrap, books)
    _projections_equal_a_rebuild(urls["projections"], keys, env, stored, books)
    return books


async def _wait_drained(
    conn: asyncpg.Connection, urls: dict[str, str], books: Books, schemas: Mapping[str, str]
) -> None:
    """Until every outbox is empty and every consumer has caught up (or 180 s pass)."""
    from immunreg.demo import wait_until_quiet

    deadline = time.monotonic() + 180
    while True:
        backlog = {
            s: await conn.fetchval(f"SELECT count(*) FROM {schemas[s]}.outbox") for s in PUBLISHERS
        }
        if not any(backlog.values()) and wait_until_quiet(urls, 30):
            return
        if time.monotonic() > deadline:
            books.problems.append(f"not drained after 180 s: outbox backlog {backlog}")
            return
        await asyncio.sleep(1)


async def _count_by_stream(
    conn: asyncpg.Connection, schema: str, event_type: str, streams: list[str]
) -> Counter[str]:
    rows = await conn.fetch(
        f"SELECT stream_id, count(*) AS n FROM {schema}.events "
        "WHERE type = $1 AND stream_id = ANY($2) GROUP BY stream_id",
        event_type,
        streams,
    )
    return Counter({r["stream_id"]: r["n"] for r in rows})


async def _owners(
    conn: asyncpg.Connection, ledger: Ledger, books: Books, schemas: Mapping[str, str]
) -> None:
    """Each accepted write exactly once in its owner's event store; unanswered at most once."""
    citizens = [w["id"] for w in ledger.accepted("registration")]
    found = await _count_by_stream(conn, schemas["registration"], "CitizenRegistered", citizens)
    books.accepted += len(citizens)
    books.found += sum(1 for c in citizens if found[c] == 1)
    for citizen in citizens:
        books.expect(found[citizen] == 1, f"registration {citizen}: {found[citizen]} events")

    doses = [w["id"] for w in ledger.accepted("dose")]
    streams = [f"dose-{d}" for d in doses]
    found = await _count_by_stream(conn, schemas["administration"], "DoseAdministered", streams)
    books.accepted += len(doses)
    books.found += sum(1 for s in streams if found[s] == 1)
    for stream in streams:
        books.expect(found[stream] == 1, f"dose {stream}: {found[stream]} events")

    runs = [w["id"] for w in ledger.accepted("scheduling_run")]
    rows = await conn.fetch(
        f"SELECT run_id, count(*) AS n FROM {schemas['booking']}.background_runs "
        "WHERE kind = 'scheduling' AND run_id = ANY($1) GROUP BY run_id",
        runs,
    )
    counted = Counter({r["run_id"]: r["n"] for r in rows})
    books.accepted += len(runs)
    books.found += sum(1 for r in runs if counted[r] == 1)
    for run in runs:
        books.expect(counted[run] == 1, f"scheduling run {run}: {counted[run]} rows")

    # A write the client never heard back about may or may not have landed, but never
    # twice: one dose per citizen and dose number, whatever the retries did.
    books.unanswered = sum(len(ledger.unanswered(k)) for k in ("registration", "dose"))
    twice = await conn.fetch(
        f"SELECT citizen_id, dose_number, count(*) AS n FROM {schemas['administration']}.doses "
        "GROUP BY citizen_id, dose_number HAVING count(*) > 1"
    )
    books.expect(not twice, f"doses recorded twice: {[dict(r) for r in twice]}")


async def _downstream(
    conn: asyncpg.Connection, ledger: Ledger, books: Books, schemas: Mapping[str, str]
) -> None:
    """Each accepted registration and dose reached every read model that needs it."""
    citizens = {w["id"] for w in ledger.accepted("registration")}
    for schema in ("booking", "administration", "certificates"):
        known = {
            r["citizen_id"]
            for r in await conn.fetch(
                f"SELECT citizen_id FROM {schemas[schema]}.citizens WHERE citizen_id = ANY($1)",
                list(citizens),
            )
        }
        missing = citizens - known
        books.expect(not missing, f"{schema} never learnt of {len(missing)} citizens")

    doses = [str(w["id"]) for w in ledger.accepted("dose")]
    for schema, table in (("booking", "doses"), ("certificates", "doses")):
        rows = await conn.fetch(
            f"SELECT dose_id FROM {schemas[schema]}.{table} WHERE dose_id = ANY($1)", doses
        )
        missing = set(doses) - {r["dose_id"] for r in rows}
        books.expect(not missing, f"{schema}.{table} misses {len(missing)} doses")
    # A certificate re-issued (after a correction) is replaced by one that `supersedes` it:
    # each dose has exactly one at the head of its chain (valid, or revoked for a recall).
    issued = Counter(
        r["dose_id"] for r in await certificate_heads(conn, schemas["certificates"], doses)
    )
    # A dose whose lot was recalled before its certificate was issued never gets one.
    recalled = {
        r["dose_id"]
        for r in await conn.fetch(
            f"SELECT d.dose_id FROM {schemas['certificates']}.doses d "
            f"JOIN {schemas['certificates']}.recalled_lots USING (lot_number) "
            "WHERE d.dose_id = ANY($1)",
            doses,
        )
    }
    wrong = [d for d in doses if issued[d] != 1 and not (d in recalled and issued[d] == 0)]
    books.expect(not wrong, f"certificates: {len(wrong)} doses without exactly one")
    taken = Counter(
        r["dose_id"]
        for r in await conn.fetch(
            f"SELECT data->>'dose_id' AS dose_id FROM {schemas['inventory']}.events "
            "WHERE type IN ('DoseConsumed', 'StockDiscrepancyDetected') "
            "AND data->>'dose_id' = ANY($1)",
            doses,
        )
    )
    books.expect(
        all(taken[d] == 1 for d in doses),
        f"inventory: {sum(1 for d in doses if taken[d] != 1)} doses not taken from stock once",
    )


async def certificate_heads(
    conn: asyncpg.Connection, schema: str, doses: list[str]
) -> list[asyncpg.Record]:
    """The certificate of each dose that no later one replaced (dose_id, status,
    revocation_reason, supersedes)."""
    return await conn.fetch(
        f"SELECT c.dose_id, c.status, c.revocation_reason, c.supersedes "
        f"FROM {schema}.certificates c WHERE c.dose_id = ANY($1) AND c.superseded_by IS NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {schema}.certificates n WHERE n.supersedes = c.uvci)",
        doses,
    )


async def _stored_event_ids(
    conn: asyncpg.Connection, schemas: Mapping[str, str]
) -> dict[str, set[str]]:
    stored: dict[str, set[str]] = {}
    for service in PUBLISHERS:
        rows = await conn.fetch(f"SELECT event_id FROM {schemas[service]}.events")
        stored[service] = {str(r["event_id"]) for r in rows}
    return stored


async def _published_once(bootstrap: str, stored: dict[str, set[str]], books: Books) -> None:
    """Every stored event on its topic exactly once, and nothing there that is not stored."""
    for service, event_ids in stored.items():
        records = await read_topic(bootstrap, events_topic(service))
        seen = Counter(str(json.loads(r.value or b"{}")["event_id"]) for r in records)
        missing = event_ids - set(seen)
        twice = [e for e, n in seen.items() if n > 1]
        extra = set(seen) - event_ids
        books.expect(not missing, f"{service}: {len(missing)} stored events never published")
        books.expect(not twice, f"{service}: {len(twice)} events published more than once")
        books.expect(not extra, f"{service}: {len(extra)} published events not in the store")


async def _dead_letters_empty(bootstrap: str, books: Books) -> None:
    for service in PUBLISHERS:
        dead = await read_topic(bootstrap, dlq_topic(events_topic(service)))
        books.expect(not dead, f"{dlq_topic(events_topic(service))} holds {len(dead)} messages")


def _projections_equal_a_rebuild(
    url: str, keys: Path, env: dict[str, str], stored: dict[str, set[str]], books: Books
) -> None:
    """The live projections answer as a read model rebuilt from the topics does."""
    private, _ = ensure_dev_keys(keys)
    token = issue_token(private.read_bytes(), Role.PUBLIC_HEALTH)

    def report() -> dict[str, Any]:
        request = urllib.request.Request(
            f"{url}/v1/doses/daily", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body: dict[str, Any] = json.loads(response.read())
        body.pop("fresh_as_of", None)
        return body

    live = report()
    rebuilt = subprocess.run(
        [sys.executable, "-m", "immunreg.cli", "projections", "rebuild", "--grace", "1"],
        env=env,
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    books.expect(rebuilt.returncode == 0, f"projections rebuild failed: {rebuilt.stderr[-2000:]}")
    deadline = time.monotonic() + 60
    after = report()
    while after != live and time.monotonic() < deadline:
        time.sleep(1)
        after = report()
    books.expect(after == live, f"projections differ from a rebuild: {live} != {after}")
