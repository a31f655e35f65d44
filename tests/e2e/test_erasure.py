"""Erasure cannot be undone: after `POST /v1/citizens/{id}/erase`, nothing anywhere opens the
citizen's sealed personal data any more. Every service runs as its own process.

The citizen registers, is booked, vaccinated, gets a certificate and messages. Then, as an
attacker holding a copy of everything would, the test reads every table of every schema of
the database, every message of every topic of the run's namespace and every key file of
the run, collects every value that could be a key (32 bytes, raw, base64 or hex) and every
sealed value and wrapped key that belongs to the citizen, and tries every key on every one
of them (keys that come out of a wrapped key are tried in turn). Before the erasure the same
search opens the citizen's data, through registration's KEK and through each holder's
per-citizen key; after it, nothing opens.

The citizen declares conditions and gives a reason on withdrawing (health data): no message
and no row carries either in clear, before or after the erasure; both are sealed under the
citizen's data key, open before and not after. And once erased, no row links the national id
to the citizen id, and no key found derives the citizen id from the national id.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import random
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import asyncpg
import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from e2e_http import call, poll, receive_lot, scheduling_run, send

from immunreg.contracts.common import Sealed
from immunreg.contracts.registration import (
    HealthData,
    PersonalData,
    grant_context,
    health_context,
)
from immunreg.contracts.topics import topic_namespace
from immunreg.demo import wait_until_quiet
from immunreg.messaging.topics import read_topic
from immunreg.sealing import KEY_BYTES, WRAPPED_BYTES, UnsealError, unseal, unwrap_key
from services.registration import jmbg
from services.registration.keys import KeyRing, key_wrap_context, legacy_citizen_id

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack

PFIZER = "EU/1/20/1528"
MUNICIPALITY = "70092"
HOLDERS = ("certificates", "notifications")
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
# Contraindicates Sputnik-V and BBIBP-CorV (not Comirnaty), and a condition without any.
CONDITIONS = ["pregnancy", "diabetes"]

pytestmark = pytest.mark.timeout(600)


# --- what an attacker with a copy of everything finds ---------------------------------------


@dataclass
class Item:
    """One row of a table or one message of a topic, as values found in it."""

    where: str
    strings: set[str] = field(default_factory=set)
    keys: set[bytes] = field(default_factory=set)  # 32-byte values
    sealed: list[Sealed] = field(default_factory=list)
    wrapped: set[str] = field(default_factory=set)  # base64 of the size of a wrapped key


def _b64(text: str) -> bytes | None:
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
    return None


def _collect(item: Item, value: Any, depth: int = 0) -> None:
    if depth > 12 or value is None:
        return
    if isinstance(value, dict):
        if {"nonce", "ciphertext"} <= value.keys():
            with_defaults = {"key_id": "", **value}
            with contextlib.suppress(msgspec.ValidationError):
                item.sealed.append(msgspec.convert(with_defaults, Sealed))
        for inner in value.values():
            _collect(item, inner, depth + 1)
    elif isinstance(value, list | tuple):
        for inner in value:
            _collect(item, inner, depth + 1)
    elif isinstance(value, bytes | memoryview):
        raw = bytes(value)
        if len(raw) == KEY_BYTES:
            item.keys.add(raw)
        elif raw[:1] in (b"{", b"["):
            _collect(item, raw.decode("utf-8", "replace"), depth + 1)
    elif isinstance(value, str):
        item.strings.add(value)
        stripped = value.strip()
        if stripped[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                _collect(item, json.loads(stripped), depth + 1)
            return
        if HEX_KEY.fullmatch(stripped):
            item.keys.add(bytes.fromhex(stripped))
        decoded = _b64(stripped) if len(stripped) >= 40 else None
        if decoded is not None and len(decoded) == KEY_BYTES:
            item.keys.add(decoded)
        elif decoded is not None and len(decoded) == WRAPPED_BYTES:
            item.wrapped.add(stripped)


async def database_items(dsn: str) -> list[Item]:
    """Every row of every table of every schema."""
    conn = await asyncpg.connect(dsn)
    items: list[Item] = []
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema <> ALL($1::text[])",
            list(SYSTEM_SCHEMAS),
        )
        for table in tables:
            name = f'"{table["table_schema"]}"."{table["table_name"]}"'
            for row in await conn.fetch(f"SELECT * FROM {name}"):
                item = Item(name)
                _collect(item, list(row.values()))
                items.append(item)
    finally:
        await conn.close()
    return items


async def kafka_items(bootstrap: str) -> list[Item]:
    """Every message of every topic of this run's namespace (dead-letter topics too)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(topic_namespace())]
    finally:
        await admin.close()
    assert topic_namespace() and topics, "the run's topics are found"
    items: list[Item] = []
    for topic in sorted(topics):
        for record in await read_topic(bootstrap, topic):
            item = Item(f"{topic}@{record.partition}:{record.offset}")
            _collect(item, [record.key, record.value, *(v for _, v in record.headers or ())])
            items.append(item)
    return items


def key_file_items(folder: Path) -> list[Item]:
    """Every key file of the run: base64 keys as they are, private keys as raw bytes."""
    items: list[Item] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        item = Item(str(path))
        _collect(item, data.decode("utf-8", "replace"))
        if b"PRIVATE KEY" in data:
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError):
                key = None
            if isinstance(key, ec.EllipticCurvePrivateKey):
                item.keys.add(key.private_numbers().private_value.to_bytes(32, "big"))
            elif isinstance(key, x25519.X25519PrivateKey):
                item.keys.add(key.private_bytes_raw())
        items.append(item)
    return items


def _aads(citizen_id: str, items: Iterable[Item]) -> set[bytes]:
    """Associated data a sealed value of the citizen may be bound to: the citizen id, and
    registration's KEK wrapping of a data key under any string seen beside it."""
    found = {citizen_id.encode(), health_context(citizen_id)}
    for item in items:
        found |= {key_wrap_context(citizen_id, s) for s in item.strings if len(s) < 100}
    return found


@dataclass
class Opened:
    """What the search opened: the personal and health data, and how."""

    personal: list[PersonalData]
    data_keys: set[bytes]
    via_holder: set[str]  # holders whose kept key opened a grant
    health: list[HealthData] = field(default_factory=list)


def try_everything(citizen_id: str, items: list[Item]) -> Opened:
    """Try every key found on every sealed value and wrapped key of the citizen."""
    mine = [item for item in items if any(citizen_id in s for s in item.strings)]
    keys: set[bytes] = set().union(*(item.keys for item in items))
    sealed = {msgspec.json.encode(s): s for item in mine for s in item.sealed}
    wrapped: set[str] = set().union(*(item.wrapped for item in mine))
    aads = _aads(citizen_id, mine)
    opened = Opened([], set(), set())
    tried: set[bytes] = set()
    while fresh := keys - tried:
        found: set[bytes] = set()
        for key in fresh:
            for blob in wrapped:
                for holder in HOLDERS:
                    try:
                        found.add(unwrap_key(key, blob, grant_context(citizen_id, holder)))
                        opened.via_holder.add(holder)
                    except (UnsealError, ValueError):
                        pass
            for value in sealed.values():
                for aad in aads:
                    try:
                        plain = unseal(key, value, aad)
                    except (UnsealError, ValueError):
                        continue
                    if len(plain) == KEY_BYTES:
                        found.add(plain)
                        continue
                    if aad == health_context(citizen_id):
                        opened.health.append(msgspec.json.decode(plain, type=HealthData))
                    else:
                        opened.personal.append(msgspec.json.decode(plain, type=PersonalData))
                    opened.data_keys.add(key)
        tried |= fresh
        keys |= found
    return opened


def in_clear(citizen_id: str, items: list[Item], secrets: set[str]) -> list[str]:
    """Where a row or message of the citizen holds one of `secrets` as a plain value."""
    return [i.where for i in items if citizen_id in i.strings and i.strings & secrets]


def links(citizen_id: str, national_id: str, items: list[Item]) -> list[str]:
    """Where a row or message links the national id to the citizen id: both in it, the
    national id in clear or as the registration index's keyed hash under any key found;
    or any key found derives the citizen id from the national id (ids from before
    random ids)."""
    keys: set[bytes] = set().union(*(item.keys for item in items))
    forms = {national_id} | {KeyRing(id_key=k, kek=k).national_id_hash(national_id) for k in keys}
    found = [i.where for i in items if citizen_id in i.strings and i.strings & forms]
    return found + [
        "derived by a key" for k in keys if legacy_citizen_id(k, national_id) == citizen_id
    ]


async def everything(dsn: str, bootstrap: str, keys: Path | None) -> list[Item]:
    items = await database_items(dsn) + await kafka_items(bootstrap)
    return items + (key_file_items(keys) if keys is not None else [])


# --- the citizen's life ----------------------------------------------------------------------


def mail_to(stack: Stack, address: str, count: int) -> list[dict[str, Any]]:
    def arrived() -> tuple[bool, Any]:
        messages = send("GET", f"{stack.mailbox}/v1/messages").json()["messages"]
        found = [m for m in messages if m["to"] == address]
        return len(found) >= count, found

    found: list[dict[str, Any]] = poll(f"{count} message(s) to {address}", arrived)
    return found


def register(stack: Stack, email: str) -> tuple[str, dict[str, Any]]:
    rng = random.Random()
    born = date(1960 + rng.randint(0, 40), rng.randint(1, 12), rng.randint(1, 28))
    body = {
        "national_id": jmbg.make(born, 71, rng.randint(500, 999)),
        "given_name": "Radmila",
        "family_name": "Šaulić",
        "birth_date": born.isoformat(),
        "sex": "female",
        "municipality_code": MUNICIPALITY,
        "preferred_municipality_code": MUNICIPALITY,
        "vaccine_preferences": [PFIZER],
        "conditions": CONDITIONS,
        "email": email,
        "consent": {"data_processing": True, "reminders": True},
    }
    status, created = call(
        "POST", f"{stack.urls['registration']}/v1/citizens", stack.token("admin"), body
    )
    assert status == 201, created
    return str(created["citizen_id"]), body


def book_vaccinate_and_certify(stack: Stack, citizen_id: str, email: str) -> None:
    """A site and a lot, an appointment from the scheduler, the dose, the certificate and
    the messages (booking notice, certificate ready)."""
    booking, admin = stack.urls["booking"], stack.token("admin")
    site = f"SITE-X{uuid.uuid4().hex[:8].upper()}"
    status, defined = call(
        "PUT",
        f"{booking}/v1/sites/{site}",
        admin,
        {
            "name": "Dom zdravlja Barajevo (erasure)",
            "municipality_code": MUNICIPALITY,
            "address": "Svetosavska 1",
            "latitude": 44.58,
            "longitude": 20.42,
            "daily_capacity": {PFIZER: 2000},
        },
    )
    assert status == 201, defined
    lot = receive_lot(
        stack.urls["inventory"], stack.token("logistics"), site, PFIZER, vials=2000, prefix="ERA"
    )
    names = ("registration", "inventory", "booking")
    assert wait_until_quiet({n: stack.urls[n] for n in names}, 120), "booking caught up"
    me = stack.token("citizen", citizen_id=citizen_id)
    tomorrow = date.today() + timedelta(days=1)

    def booked() -> tuple[bool, Any]:
        run = {"from_day": tomorrow.isoformat(), "horizon_days": 3}
        scheduling_run(booking, admin, run)
        status, mine = call("GET", f"{booking}/v1/citizens/{citizen_id}/appointments", me)
        return status == 200 and len(mine["items"]) == 1, mine

    poll("the scheduler books the citizen", booked)
    dose = {
        "citizen_id": citizen_id,
        "site_id": site,
        "lot_number": lot,
        "product_code": PFIZER,
        "dose_number": 1,
        "administered_at": (datetime.now(UTC) - timedelta(minutes=5))
        .replace(microsecond=0)
        .isoformat(),
        "vaccinator_id": "vaccinator-erasure",
    }
    staff = stack.token("site_staff", site_id=site)

    def recorded() -> tuple[bool, Any]:
        status, body = call("POST", f"{stack.urls['administration']}/v1/doses", staff, dose)
        return status in (200, 201), (status, body)

    poll("administration records the dose", recorded)

    def issued() -> tuple[bool, Any]:
        url = f"{stack.urls['certificates']}/v1/citizens/{citizen_id}/certificates"
        status, body = call("GET", url, me)
        return status == 200 and len(body["certificates"]) == 1, body

    poll("the certificate is issued", issued)
    subjects = [m["subject"] for m in mail_to(stack, email, 2)]
    assert len(subjects) >= 2, subjects  # the booking notice and "your certificate is ready"


async def holder_keys_left(dsn: str, schemas: Iterable[str], citizen_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        total = 0
        for schema in schemas:
            total += await conn.fetchval(
                f"SELECT count(*) FROM {schema}.holder_keys WHERE citizen_id = $1",
                citizen_id,
            )
        return int(total)
    finally:
        await conn.close()


async def schemas_of(dsn: str, suffix: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = 'holder_keys' AND table_schema LIKE $1",
            f"%\\_{suffix}",
        )
        return [r["table_schema"] for r in rows]
    finally:
        await conn.close()


def test_after_erasure_no_key_anywhere_opens_the_citizens_data(
    stack: Stack, infra: dict[str, str]
) -> None:
    needed = ("registration", "booking", "inventory", "administration", "certificates")
    missing = [n for n in (*needed, "notifications") if n not in stack.urls]
    if missing:
        pytest.skip(f"erasure is shown with every service running; missing {missing}")
    dsn, bootstrap = infra["DATABASE_URL"], infra["KAFKA_BOOTSTRAP_SERVERS"]
    keys = Path(os.environ["IMMUNREG_KEYS_DIR"])
    email = f"radmila.{uuid.uuid4().hex[:8]}@example.rs"
    citizen_id, body = register(stack, email)
    book_vaccinate_and_certify(stack, citizen_id, email)
    holder_schemas = [s for h in HOLDERS for s in asyncio.run(schemas_of(dsn, h))]
    assert asyncio.run(holder_keys_left(dsn, holder_schemas, citizen_id)) == 2
    reason = f"moving abroad, pregnant ({uuid.uuid4().hex[:8]})"
    withdrawn, _ = call(
        "DELETE",
        f"{stack.urls['registration']}/v1/citizens/{citizen_id}?reason={quote(reason)}",
        stack.token("admin"),
    )
    assert withdrawn == 204
    health_in_clear = {*CONDITIONS, reason}
    assert wait_until_quiet(stack.urls, 120), "the withdrawal reached every consumer"

    # Before: the search opens the citizen's data, through registration's KEK ...
    found = asyncio.run(everything(dsn, bootstrap, keys))
    before = try_everything(citizen_id, found)
    assert {p.national_id for p in before.personal} == {body["national_id"]}
    assert {p.given_name for p in before.personal} == {"Radmila"}
    # ... health data included, sealed under the same key, and never in clear.
    assert {tuple(h.conditions) for h in before.health} >= {tuple(CONDITIONS)}
    assert reason in {h.withdrawal_reason for h in before.health}
    assert in_clear(citizen_id, found, health_in_clear) == []
    assert links(citizen_id, body["national_id"], found), "the index links them until erasure"
    # ... and, without any key file, through each holder's key and the grant made to it.
    held = try_everything(citizen_id, asyncio.run(everything(dsn, bootstrap, None)))
    assert held.via_holder == set(HOLDERS), held.via_holder
    assert held.personal and held.data_keys == before.data_keys
    assert held.health

    status, _ = call(
        "POST", f"{stack.urls['registration']}/v1/citizens/{citizen_id}/erase", stack.token("admin")
    )
    assert status == 204

    me = stack.token("citizen", citizen_id=citizen_id)

    def revoked() -> tuple[bool, Any]:
        url = f"{stack.urls['certificates']}/v1/citizens/{citizen_id}/certificates"
        status, body = call("GET", url, me)
        return status == 200 and body["certificates"][0]["status"] == "revoked", body

    poll("certificates hears of the erasure", revoked)
    quiet = wait_until_quiet(stack.urls, 120)
    assert quiet, "every outbox published and every consumer caught up"

    found = asyncio.run(everything(dsn, bootstrap, keys))
    after = try_everything(citizen_id, found)
    assert after.personal == [] and after.data_keys == set() and after.via_holder == set()
    assert after.health == []
    assert in_clear(citizen_id, found, health_in_clear) == []
    assert links(citizen_id, body["national_id"], found) == []
    assert asyncio.run(holder_keys_left(dsn, holder_schemas, citizen_id)) == 0
