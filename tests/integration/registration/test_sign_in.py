"""Citizens' sign-in against the real service, PostgreSQL and a real SMTP server and SMS
gateway (the local mailbox, in this process): a code arrives, signs the citizen in, and
the token reaches that citizen's record only; expiry, tries and limits."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from immunreg.localinfra.mailbox import Mailbox, Received
from services.registration.contacts import SIGN_IN_KEY

from .conftest import Registration, running_registration

CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture(scope="module")
async def mailbox() -> AsyncIterator[Mailbox]:
    async with Mailbox().running() as box:
        yield box


def outbound_settings(box: Mailbox) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(box.smtp_port),
        "SMS_GATEWAY_URL": f"http://127.0.0.1:{box.http_port}/v1/sms",
    }


@pytest.fixture(scope="module")
async def signing_in(
    dsn: str, bootstrap: str, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Registration]:
    keys = tmp_path_factory.mktemp("sign-in-keys")
    async with running_registration(dsn, bootstrap, keys, extra=outbound_settings(mailbox)) as r:
        yield r


def fresh_email() -> str:
    return f"ana.{uuid.uuid4().hex[:10]}@example.rs"


def fresh_phone(registration: Registration) -> str:
    return f"+38164{registration.rng.randint(1000000, 9999999)}"


async def arrived(box: Mailbox, address: str, count: int = 1) -> list[Received]:
    """The messages to `address` once `count` have arrived (polling with a deadline)."""
    for _ in range(200):
        found = box.to(address)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} message(s) expected, {len(box.to(address))} arrived")


def code_in(message: Received) -> str:
    match = CODE.search(message.body)
    assert match is not None, "the message carries no 6-digit code"
    return match.group(1)


async def ask_code(registration: Registration, contact: str) -> Any:
    response = await registration.client.post("/v1/sign-in/codes", json={"contact": contact})
    return response


async def exchange(registration: Registration, contact: str, code: str) -> Any:
    return await registration.client.post(
        "/v1/sign-in/tokens", json={"contact": contact, "code": code}
    )


async def test_a_code_arrives_by_email_and_its_token_reads_only_that_citizen(
    signing_in: Registration, mailbox: Mailbox
) -> None:
    email = fresh_email()
    citizen_id = await signing_in.register(signing_in.body(email=email, phone=None))
    other_id = await signing_in.register(signing_in.body(email=fresh_email(), phone=None))

    response = await ask_code(signing_in, email.upper())  # typed in capitals: still found
    assert response.status == 202
    [message] = await arrived(mailbox, email)
    assert message.channel == "email"

    answer = await exchange(signing_in, email, code_in(message))
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    assert body["citizen_id"] == citizen_id and body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 30 * 60
    assert answer.headers["Cache-Control"] == "no-store"
    headers = {"Authorization": f"Bearer {body['access_token']}"}

    own = await signing_in.client.get(f"/v1/citizens/{citizen_id}", headers=headers)
    assert own.status == 200 and (await own.json())["email"] == email
    other = await signing_in.client.get(f"/v1/citizens/{other_id}", headers=headers)
    assert other.status == 403
    assert (await other.json())["code"] == "other_citizen"
    # Staff-only routes stay closed to it.
    erase = await signing_in.client.post(f"/v1/citizens/{other_id}/erase", headers=headers)
    assert erase.status == 403

    used = await exchange(signing_in, email, code_in(message))
    assert used.status == 422 and (await used.json())["code"] == "invalid_code"


async def test_a_code_arrives_by_sms_through_the_gateway(
    signing_in: Registration, mailbox: Mailbox
) -> None:
    phone = fresh_phone(signing_in)
    citizen_id = await signing_in.register(signing_in.body(phone=phone, email=None))
    local = "0" + phone.removeprefix("+381")  # as people write it: 064...
    assert (await ask_code(signing_in, local)).status == 202
    [message] = await arrived(mailbox, phone)
    assert message.channel == "sms"
    answer = await exchange(signing_in, phone, code_in(message))
    assert answer.status == 200 and (await answer.json())["citizen_id"] == citizen_id


async def test_an_unknown_contact_gets_the_same_answer_and_nothing_is_sent(
    signing_in: Registration, mailbox: Mailbox
) -> None:
    email = fresh_email()
    known = fresh_email()
    await signing_in.register(signing_in.body(email=known, phone=None))
    unknown_answer = await ask_code(signing_in, email)
    known_answer = await ask_code(signing_in, known)
    assert unknown_answer.status == known_answer.status == 202
    assert await unknown_answer.json() == await known_answer.json()
    await arrived(mailbox, known)  # by then an unknown contact's message would be there too
    assert mailbox.to(email) == []
    assert (await exchange(signing_in, email, "123456")).status == 422


async def code_and_a_wrong_one(registration: Registration, box: Mailbox) -> tuple[str, str, str]:
    """(e-mail, the code sent to it, a code that is not it) for a new citizen."""
    email = fresh_email()
    await registration.register(registration.body(email=email, phone=None))
    await ask_code(registration, email)
    code = code_in((await arrived(box, email))[0])
    return email, code, f"{(int(code) + 1) % 1_000_000:06d}"


async def test_five_wrong_tries_use_the_code_up(signing_in: Registration, mailbox: Mailbox) -> None:
    email, code, wrong = await code_and_a_wrong_one(signing_in, mailbox)
    for _ in range(5):
        answer = await exchange(signing_in, email, wrong)
        assert answer.status == 422
        problem = await answer.json()
        assert problem["code"] == "invalid_code"
        assert [e["field"] for e in problem["errors"]] == ["body.code"]
    assert (await exchange(signing_in, email, code)).status == 422  # the right one, too late


async def test_four_wrong_tries_leave_the_right_code_working(
    signing_in: Registration, mailbox: Mailbox
) -> None:
    email, code, wrong = await code_and_a_wrong_one(signing_in, mailbox)
    for _ in range(4):
        assert (await exchange(signing_in, email, wrong)).status == 422
    assert (await exchange(signing_in, email, code)).status == 200


async def test_a_code_expires_after_five_minutes(
    signing_in: Registration, mailbox: Mailbox
) -> None:
    sign_in = signing_in.app[SIGN_IN_KEY]
    start = datetime.now(UTC)
    email = fresh_email()
    await signing_in.register(signing_in.body(email=email, phone=None))
    try:
        sign_in.clock = lambda: start
        await ask_code(signing_in, email)
        first = code_in((await arrived(mailbox, email))[0])
        sign_in.clock = lambda: start + timedelta(minutes=5)
        assert (await exchange(signing_in, email, first)).status == 422

        sign_in.clock = lambda: start
        await ask_code(signing_in, email)
        second = code_in((await arrived(mailbox, email, 2))[1])
        sign_in.clock = lambda: start + timedelta(minutes=4, seconds=59)
        assert (await exchange(signing_in, email, second)).status == 200
    finally:
        sign_in.clock = lambda: datetime.now(UTC)


async def test_codes_are_limited_per_contact_with_retry_after(
    signing_in: Registration, mailbox: Mailbox
) -> None:
    email = fresh_email()
    await signing_in.register(signing_in.body(email=email, phone=None))
    for _ in range(3):
        assert (await ask_code(signing_in, email)).status == 202
    refused = await ask_code(signing_in, email)
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["code"] == "rate_limited"
    # Another contact from the same address is not held back by this one's limit.
    assert (await ask_code(signing_in, fresh_email())).status == 202
    assert len(await arrived(mailbox, email, 3)) == 3


async def test_sign_in_is_limited_per_client_address(
    dsn: str, bootstrap: str, mailbox: Mailbox, tmp_path: Any
) -> None:
    async with running_registration(
        dsn, bootstrap, tmp_path, extra=outbound_settings(mailbox), rate_limit_burst=2
    ) as registration:
        statuses = [(await ask_code(registration, fresh_email())).status for _ in range(3)]
        assert statuses == [202, 202, 429]
        tries = [(await exchange(registration, fresh_email(), "000000")).status for _ in range(3)]
        assert tries == [422, 422, 429]


async def test_bad_input_names_the_field_and_stores_nothing(signing_in: Registration) -> None:
    before = await signing_in.pool.fetchval("SELECT count(*) FROM sign_in_codes")
    answer = await ask_code(signing_in, "not a contact")
    assert answer.status == 422
    assert [e["field"] for e in (await answer.json())["errors"]] == ["body.contact"]
    malformed = await exchange(signing_in, fresh_email(), "12ab")
    assert malformed.status == 422
    assert [e["field"] for e in (await malformed.json())["errors"]] == ["body.code"]
    assert await signing_in.pool.fetchval("SELECT count(*) FROM sign_in_codes") == before


async def test_the_lookup_holds_no_contact_and_erasure_removes_it(
    signing_in: Registration, mailbox: Mailbox
) -> None:
    email = fresh_email()
    phone = fresh_phone(signing_in)
    citizen_id = await signing_in.register(signing_in.body(email=email, phone=phone))
    rows = await signing_in.pool.fetch(
        "SELECT contact_hash, citizen_id FROM sign_in_contacts WHERE citizen_id = $1", citizen_id
    )
    assert len(rows) == 2
    stored = " ".join(r["contact_hash"] for r in rows)
    for fragment in (email, email.split("@")[0], phone, phone[4:]):
        assert fragment not in stored
    await ask_code(signing_in, email)
    await arrived(mailbox, email)

    erased = await signing_in.client.post(
        f"/v1/citizens/{citizen_id}/erase", headers=signing_in.admin
    )
    assert erased.status == 204
    for table in ("sign_in_contacts", "sign_in_codes"):
        count = await signing_in.pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE citizen_id = $1", citizen_id
        )
        assert count == 0, table
    assert (await ask_code(signing_in, phone)).status == 202
    await asyncio.sleep(0)  # a send would be scheduled by now; none is
    assert not signing_in.app[SIGN_IN_KEY].sending
    assert mailbox.to(phone) == []


async def test_a_changed_contact_signs_in_and_the_old_one_no_longer_does(
    signing_in: Registration, mailbox: Mailbox
) -> None:
    old, new = fresh_email(), fresh_email()
    citizen_id = await signing_in.register(signing_in.body(email=old, phone=None))
    headers = {**signing_in.citizen(citizen_id), "If-Match": '"1"'}
    changed = await signing_in.client.patch(
        f"/v1/citizens/{citizen_id}", json={"email": new}, headers=headers
    )
    assert changed.status == 200, await changed.text()
    await ask_code(signing_in, old)
    await ask_code(signing_in, new)
    code = code_in((await arrived(mailbox, new))[0])
    assert mailbox.to(old) == []
    answer = await exchange(signing_in, new, code)
    assert answer.status == 200 and (await answer.json())["citizen_id"] == citizen_id
