"""Health data outlives no erasure: every service runs as its own process.

Over HTTP an administrator records a dose with an override reason and a nurse reports an
adverse event with symptoms and a description. The test then reads the administration
topic on Kafka and every row of every table of every schema: no reason, symptom or
description is there in clear, but for administration's own read model while the citizen
exists (it answers the API and FHIR). The sealed details open with the citizen's key in
administration's `citizen_keys`, and a search over every value in the database that could
be a key finds it. After `POST /v1/citizens/{id}/erase` the key row is gone, the same
search opens nothing, and no text is left in clear anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from e2e_http import call, poll, receive_lot

from immunreg.contracts.administration import (
    CONTEXT,
    AdverseEventDetails,
    AdverseEventReported,
    DoseAdministered,
    DoseCorrected,
    DoseNotes,
    DoseVoided,
)
from immunreg.contracts.envelope import decode_envelope
from immunreg.contracts.topics import events_topic
from immunreg.demo import wait_until_quiet
from immunreg.messaging.topics import read_topic
from immunreg.sealing import KEY_BYTES, CitizenKey
from services.administration.keys import adverse_details, dose_notes
from services.registration import jmbg

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack

PFIZER = "EU/1/20/1528"
MUNICIPALITY = "70211"  # Beograd-Rakovica: no other e2e test counts there
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
# Where the text may be in clear while the citizen exists (administration's read model).
READ_MODEL = ("doses", "adverse_events")

AdministrationEvent = DoseAdministered | DoseCorrected | DoseVoided | AdverseEventReported
Opened = DoseNotes | AdverseEventDetails

pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class Health:
    """The texts of one run (unique, so other tests' rows never match them)."""

    override: str
    symptoms: list[str]
    description: str

    @classmethod
    def new(cls) -> Health:
        mark = uuid.uuid4().hex[:10]
        return cls(
            override=f"first dose given abroad {mark}",
            symptoms=[f"urticaria {mark}", f"dyspnoea {mark}"],
            description=f"wheezing within 20 minutes, adrenaline given {mark}",
        )

    @property
    def texts(self) -> list[str]:
        return [self.override, *self.symptoms, self.description]


# --- what a copy of the database and the topic holds ----------------------------------------


@dataclass
class Copy:
    """Every row of every table (as text, by table) and every administration message."""

    rows: dict[str, list[str]]
    messages: list[bytes]
    key_candidates: set[bytes]
    events: list[AdministrationEvent]

    def clear_in(self, texts: list[str]) -> set[str]:
        """The tables and the topic where any of `texts` is in clear."""
        found = {t for t, rows in self.rows.items() if any(x in r for r in rows for x in texts)}
        if any(x.encode() in m for m in self.messages for x in texts):
            found.add(CONTEXT.topic)
        return found


def _key_candidates(value: Any) -> set[bytes]:
    """32-byte values, raw, hex or base64: whatever could be a data key."""
    if isinstance(value, bytes | memoryview):
        raw = bytes(value)
        return {raw} if len(raw) == KEY_BYTES else set()
    if not isinstance(value, str):
        return set()
    text = value.strip()
    if HEX_KEY.fullmatch(text):
        return {bytes.fromhex(text)}
    if 40 <= len(text) <= 48:
        try:
            decoded = base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return set()
        return {decoded} if len(decoded) == KEY_BYTES else set()
    return set()


def _text(value: Any) -> str:
    return bytes(value).decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)


async def copy_everything(dsn: str, bootstrap: str, namespace: str, citizen_id: str) -> Copy:
    conn = await asyncpg.connect(dsn)
    rows: dict[str, list[str]] = {}
    keys: set[bytes] = set()
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema <> ALL($1::text[])",
            list(SYSTEM_SCHEMAS),
        )
        for table in tables:
            name = f'"{table["table_schema"]}"."{table["table_name"]}"'
            for row in await conn.fetch(f"SELECT * FROM {name}"):
                rows.setdefault(name, []).append(" ".join(_text(v) for v in row.values()))
                for value in row.values():
                    keys |= _key_candidates(value)
    finally:
        await conn.close()
    messages: list[bytes] = []
    events: list[AdministrationEvent] = []
    for record in await read_topic(bootstrap, events_topic(CONTEXT.name, namespace)):
        messages.append(bytes(record.value))
        event = CONTEXT.read(decode_envelope(record.value))
        if getattr(event, "citizen_id", None) == citizen_id:
            assert isinstance(event, AdministrationEvent)
            events.append(event)
    return Copy(rows, messages, keys, events)


def opened_with(events: list[AdministrationEvent], key: CitizenKey) -> list[Opened]:
    """What the citizen's events on the topic open to under `key` (empty ones left out),
    in no particular order (the topic's partitions are read one after the other)."""
    opened: list[Opened] = []
    for event in events:
        if event.details is None:
            continue
        if isinstance(event, AdverseEventReported):
            details = adverse_details(event, key)
            if details.symptoms:
                opened.append(details)
        elif (notes := dose_notes(event, key)) != DoseNotes():
            opened.append(notes)
    return opened


def open_with_anything(copy: Copy) -> list[Opened]:
    """Every 32-byte value found anywhere, tried on every sealed detail of the citizen."""
    opened: list[Opened] = []
    for event in copy.events:
        if event.details is not None:
            for raw in copy.key_candidates:
                opened += opened_with([event], CitizenKey(event.details.key_id, raw))
    return opened


async def administration_key(dsn: str, citizen_id: str) -> tuple[list[str], CitizenKey | None]:
    """The schemas that have a `citizen_keys` row for the citizen, and the key in it."""
    conn = await asyncpg.connect(dsn)
    try:
        schemas = [
            r["table_schema"]
            for r in await conn.fetch(
                "SELECT table_schema FROM information_schema.tables"
                " WHERE table_name = 'citizen_keys' AND table_schema LIKE '%administration'"
            )
        ]
        found: list[str] = []
        key = None
        for schema in schemas:
            row = await conn.fetchrow(
                f'SELECT key_id, key FROM "{schema}".citizen_keys WHERE citizen_id = $1',
                citizen_id,
            )
            if row is not None:
                found.append(schema)
                key = CitizenKey(row["key_id"], bytes(row["key"]))
        return found, key
    finally:
        await conn.close()


# --- the citizen's visit ---------------------------------------------------------------------


def register(stack: Stack) -> str:
    rng = random.Random()
    born = date(1950 + rng.randint(0, 40), rng.randint(1, 12), rng.randint(1, 28))
    body = {
        "national_id": jmbg.make(born, 71, rng.randint(500, 999)),
        "given_name": "Dragana",
        "family_name": "Mirković",
        "birth_date": born.isoformat(),
        "sex": "female",
        "municipality_code": MUNICIPALITY,
        "preferred_municipality_code": MUNICIPALITY,
        "vaccine_preferences": [PFIZER],
        "email": f"dragana.{uuid.uuid4().hex[:8]}@example.rs",
        "consent": {"data_processing": True},
    }
    status, created = call(
        "POST", f"{stack.urls['registration']}/v1/citizens", stack.token("admin"), body
    )
    assert status == 201, created
    return str(created["citizen_id"])


def site_with_a_lot(stack: Stack) -> tuple[str, str]:
    site = f"SITE-H{uuid.uuid4().hex[:8].upper()}"
    status, defined = call(
        "PUT",
        f"{stack.urls['booking']}/v1/sites/{site}",
        stack.token("admin"),
        {
            "name": "Dom zdravlja Rakovica (health erasure)",
            "municipality_code": MUNICIPALITY,
            "address": "Patrijarha Dimitrija 1",
            "latitude": 44.74,
            "longitude": 20.44,
            "daily_capacity": {PFIZER: 10},
        },
    )
    assert status == 201, defined
    lot = receive_lot(
        stack.urls["inventory"], stack.token("logistics"), site, PFIZER, vials=10, prefix="HEA"
    )
    return site, lot


def vaccinate_and_report(stack: Stack, citizen_id: str, health: Health) -> str:
    """Dose 2 with no dose 1 on record (overridden, with a reason), then an adverse event;
    the dose's id."""
    administration = stack.urls["administration"]
    site, lot = site_with_a_lot(stack)
    names = ("registration", "inventory", "booking", "administration")
    assert wait_until_quiet({n: stack.urls[n] for n in names}, 120), "administration caught up"
    given = (datetime.now(UTC) - timedelta(minutes=40)).replace(microsecond=0)
    dose = {
        "citizen_id": citizen_id,
        "site_id": site,
        "lot_number": lot,
        "product_code": PFIZER,
        "dose_number": 2,
        "administered_at": given.isoformat(),
        "vaccinator_id": "vaccinator-health-erasure",
        "override_reason": health.override,
    }

    def recorded() -> tuple[bool, Any]:
        status, body = call("POST", f"{administration}/v1/doses", stack.token("admin"), dose)
        return status in (200, 201), (status, body)

    dose_id: str = poll("administration records the dose", recorded)[1]["dose_id"]
    status, view = call("GET", f"{administration}/v1/doses/{dose_id}", stack.token("admin"))
    assert (status, view["overridden_rules"]) == (200, ["dose_number_out_of_sequence"]), view
    status, reported = call(
        "POST",
        f"{administration}/v1/adverse-events",
        stack.token("site_staff", site_id=site),
        {
            "dose_id": dose_id,
            "symptoms": health.symptoms,
            "onset_at": (given + timedelta(minutes=20)).isoformat(),
            "serious": True,
            "outcome": "recovering",
            "description": health.description,
        },
    )
    assert status == 201, reported
    return dose_id


def test_after_erasure_no_key_opens_the_citizens_health_details(
    stack: Stack, infra: dict[str, str]
) -> None:
    needed = ("registration", "booking", "inventory", "administration")
    missing = [n for n in needed if n not in stack.urls]
    if missing:
        pytest.skip(f"health erasure is shown with these services running; missing {missing}")
    dsn, bootstrap = infra["DATABASE_URL"], infra["KAFKA_BOOTSTRAP_SERVERS"]
    health = Health.new()
    citizen_id = register(stack)
    dose_id = vaccinate_and_report(stack, citizen_id, health)
    assert wait_until_quiet(stack.urls, 120), "every outbox published"

    # Before: in clear only in administration's read model; sealed on the topic, opened
    # by the citizen's key in administration's schema, which a search of the copy finds.
    schemas, key = asyncio.run(administration_key(dsn, citizen_id))
    assert len(schemas) == 1 and key is not None, schemas
    before = asyncio.run(copy_everything(dsn, bootstrap, stack.namespace, citizen_id))
    read_model = {f'"{schemas[0]}"."{table}"' for table in READ_MODEL}
    assert before.clear_in(health.texts) <= read_model
    assert before.clear_in([health.description]) == {f'"{schemas[0]}"."adverse_events"'}
    expected = [
        AdverseEventDetails(
            symptoms=health.symptoms, outcome="recovering", description=health.description
        ),
        DoseNotes(override_reason=health.override),
    ]
    assert sorted(opened_with(before.events, key), key=repr) == expected
    assert sorted(open_with_anything(before), key=repr) == expected

    status, _ = call(
        "POST", f"{stack.urls['registration']}/v1/citizens/{citizen_id}/erase", stack.token("admin")
    )
    assert status == 204

    def erased() -> tuple[bool, Any]:
        url = f"{stack.urls['administration']}/v1/citizens/{citizen_id}/doses"
        status, body = call("GET", url, stack.token("admin"))
        return status == 410, (status, body)

    poll("administration hears of the erasure", erased)
    # Nor is one of their doses read: the same 410 problem as their record.
    url = f"{stack.urls['administration']}/v1/doses/{dose_id}"
    status, problem = call("GET", url, stack.token("admin"))
    assert status == 410 and problem["code"] == "citizen_erased", (status, problem)
    assert wait_until_quiet(stack.urls, 120), "every consumer caught up"

    # After: the key row is gone, nothing anywhere opens the details, nothing is in clear.
    assert asyncio.run(administration_key(dsn, citizen_id)) == ([], None)
    after = asyncio.run(copy_everything(dsn, bootstrap, stack.namespace, citizen_id))
    assert len([e for e in after.events if e.details is not None]) == 2
    assert open_with_anything(after) == []
    assert after.clear_in(health.texts) == set()
