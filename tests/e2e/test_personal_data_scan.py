"""No personal data in clear on Kafka or in any log line the run wrote.

Runs after every other test (tests/conftest.py moves it last, after the API fuzzing).
Every national id, name, phone and e-mail any e2e test sent through `e2e_http.send`
(`SENT_PERSONAL`), and those of a citizen this test registers and signs in itself, are
looked for in every message of every topic of the run's namespace (keys, values and
headers; dead-letter topics too) and in every line the run appended to the log files of
the services, the portal and the load tests' stacks (the local mailbox's own log is left
out: it is the citizens' SMTP server and telephone network, outside the system). Events
carry personal data only sealed, and services log ids, never names or contacts; a hit
names where, never the value.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from e2e_http import SENT_PERSONAL, poll, send

from immunreg.contracts.topics import topic_namespace
from immunreg.demo import wait_until_quiet
from immunreg.messaging.topics import read_topic
from immunreg.paths import state_dir
from services.registration import jmbg

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack

pytestmark = pytest.mark.timeout(600)

# Shorter values (a given name such as "Ana") would match inside other words and base64.
MIN_NAME_LENGTH = 4
# The local mailbox's log: the SMTP server and SMS gateway stand-in receive contacts.
OUTSIDE_THE_SYSTEM = ("mailbox",)
_OWN_FIELDS = {"national_id", "given_name", "family_name", "phone", "email"}


@dataclass(frozen=True)
class Needle:
    """One personal value and the spellings it may take in bytes written by the system."""

    label: str  # what kind of value, and which one (by position), never the value itself
    pattern: re.Pattern[str]


def needles(values: set[str]) -> list[Needle]:
    """A pattern for each value: as sent, JSON-escaped (ASCII), and for a phone its digits;
    names only as whole words."""
    found = []
    for index, value in enumerate(sorted(values)):
        if len(value) < MIN_NAME_LENGTH:
            continue
        spellings = {value, json.dumps(value)[1:-1]}
        if value.startswith("+") or value.replace(" ", "").isdigit():
            spellings.add(re.sub(r"\D", "", value))
        alternatives = "|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True))
        found.append(
            Needle(f"personal value #{index}", re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)"))
        )
    return found


def hits(text: str, where: str, patterns: list[Needle]) -> list[str]:
    """`where: label` for each needle found in `text`."""
    return [f"{where}: {n.label}" for n in patterns if n.pattern.search(text)]


async def topic_texts(bootstrap: str) -> list[tuple[str, str]]:
    """(topic@partition:offset, the message's key, value and headers as text), for every
    message of every topic of this run's namespace."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(topic_namespace())]
    finally:
        await admin.close()
    assert topic_namespace() and topics, "the run's topics are found"
    texts = []
    for topic in sorted(topics):
        for record in await read_topic(bootstrap, topic):
            parts = [record.key or b"", record.value or b"", *(v for _, v in record.headers or ())]
            text = "\n".join(p.decode("utf-8", "replace") for p in parts)
            texts.append((f"{topic}@{record.partition}:{record.offset}", text))
    return texts


def log_texts(offsets: dict[Path, int]) -> list[tuple[str, str]]:
    """(file:line, the line) for every line appended to a log file since the run began."""
    lines = []
    for log in sorted((state_dir() / "logs").glob("*.log")):
        if log.name.startswith(OUTSIDE_THE_SYSTEM):
            continue
        with log.open("rb") as handle:
            handle.seek(offsets.get(log, 0))
            written = handle.read().decode("utf-8", "replace")
        lines += [(f"{log.name}:+{n}", line) for n, line in enumerate(written.splitlines(), 1)]
    return lines


def register_and_sign_in(stack: Stack) -> set[str]:
    """A citizen with a phone and an e-mail, registered, asked for a sign-in code and read
    back: the personal values this test itself sent."""
    rng = random.Random()
    born = date(1950 + rng.randint(0, 50), rng.randint(1, 12), rng.randint(1, 28))
    email = f"leposava.{uuid.uuid4().hex[:8]}@example.rs"
    body = {
        "national_id": jmbg.make(born, 71, rng.randint(500, 999)),
        "given_name": "Leposava",
        "family_name": rng.choice(["Petrović", "Đorđević", "Marković", "Živković"]),
        "birth_date": born.isoformat(),
        "sex": "female",
        "municipality_code": "70092",
        "phone": f"+38164{rng.randint(1_000_000, 9_999_999)}",
        "email": email,
        "consent": {"data_processing": True, "reminders": True},
    }
    registration = stack.urls["registration"]
    created = send("POST", f"{registration}/v1/citizens", stack.token("admin"), body)
    assert created.status == 201, created.json()
    citizen_id = created.json()["citizen_id"]
    asked = send("POST", f"{registration}/v1/sign-in/codes", {}, {"contact": email})
    assert asked.status == 202, asked.json()

    def mailed() -> tuple[bool, int]:
        messages = send("GET", f"{stack.mailbox}/v1/messages").json()["messages"]
        count = sum(m["to"] == email for m in messages)
        return count > 0, count

    poll(f"a sign-in code mailed to {email}", mailed)
    read = send("GET", f"{registration}/v1/citizens/{citizen_id}", stack.token("admin"))
    assert read.status == 200 and read.json()["email"] == email
    return {v for k, v in body.items() if isinstance(v, str) and k in _OWN_FIELDS}


def test_the_scan_finds_a_value_in_any_spelling(tmp_path: Path) -> None:
    """The matcher itself: a planted value is found as sent, JSON-escaped and as digits,
    and not inside a longer word."""
    patterns = needles({"Šaulić", "+381641234567", "0101990710008", "Ana"})
    assert hits('{"n":"\\u0160auli\\u0107"}', "json", patterns) == ["json: personal value #3"]
    assert hits("tel 381641234567 x", "digits", patterns) == ["digits: personal value #0"]
    assert hits("id=0101990710008", "id", patterns) == ["id: personal value #1"]
    assert hits("Anastasija 10101990710008", "longer", patterns) == []


def test_no_personal_data_in_clear_on_kafka_or_in_any_log(
    stack: Stack, infra: dict[str, str]
) -> None:
    if "registration" not in stack.urls or "notifications" not in stack.urls:
        pytest.skip("the scan needs registration and notifications running")
    own = register_and_sign_in(stack)
    assert own <= SENT_PERSONAL, "send() remembers what every test sends"
    assert wait_until_quiet(stack.urls, 120), "every event reached Kafka and every consumer"
    patterns = needles(SENT_PERSONAL)
    assert len(patterns) >= len(own)

    messages = asyncio.run(topic_texts(infra["KAFKA_BOOTSTRAP_SERVERS"]))
    lines = log_texts(stack.log_offsets)
    assert messages and lines, "there is something to scan"
    found = [h for where, text in [*messages, *lines] for h in hits(text, where, patterns)]
    assert found == [], f"personal data in clear ({len(found)} places): {found[:20]}"
