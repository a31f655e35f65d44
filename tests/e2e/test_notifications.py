"""Citizens as they meet the registry with every service running as its own process: sign
in with the code the local mailbox received, see only their own record and messages."""

from __future__ import annotations

import random
import re
import time
import uuid
from datetime import date
from typing import TYPE_CHECKING, Any

from e2e_http import send

from services.registration import jmbg

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack


def registered(stack: Stack, email: str, language: str) -> str:
    rng = random.Random()
    born = date(1960 + rng.randint(0, 40), rng.randint(1, 12), rng.randint(1, 28))
    body = {
        "national_id": jmbg.make(born, 71, rng.randint(500, 999)),
        "given_name": "Desanka",
        "family_name": "Maksimović",
        "birth_date": born.isoformat(),
        "sex": "female",
        "municipality_code": "70092",
        "email": email,
        "language": language,
        "consent": {"data_processing": True},
    }
    answer = send("POST", f"{stack.urls['registration']}/v1/citizens", stack.token("admin"), body)
    assert answer.status == 201, answer.json()
    citizen_id: str = answer.json()["citizen_id"]
    return citizen_id


def mail_to(stack: Stack, address: str) -> list[dict[str, Any]]:
    """What the mailbox holds for `address`, once something arrived (polled, with a deadline)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        messages = send("GET", f"{stack.mailbox}/v1/messages").json()["messages"]
        found = [m for m in messages if m["to"] == address]
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"nothing arrived for {address}")


def test_a_citizen_signs_in_with_the_code_they_received(stack: Stack) -> None:
    email = f"desanka.{uuid.uuid4().hex[:8]}@example.rs"
    citizen_id = registered(stack, email, "sr-Cyrl")
    other_id = registered(stack, f"other.{uuid.uuid4().hex[:8]}@example.rs", "en")
    registration = stack.urls["registration"]

    asked = send("POST", f"{registration}/v1/sign-in/codes", {}, {"contact": email})
    assert asked.status == 202
    [message] = mail_to(stack, email)
    match = re.search(r"\b(\d{6})\b", message["body"])
    assert match is not None
    answer = send(
        "POST", f"{registration}/v1/sign-in/tokens", {}, {"contact": email, "code": match[1]}
    )
    assert answer.status == 200, answer.json()
    token = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    own = send("GET", f"{registration}/v1/citizens/{citizen_id}", token)
    assert own.status == 200 and own.json()["email"] == email
    assert send("GET", f"{registration}/v1/citizens/{other_id}", token).status == 403

    # The same token is good at the other services, for this citizen only.
    notifications = stack.urls["notifications"]
    messages = send("GET", f"{notifications}/v1/citizens/{citizen_id}/messages", token)
    assert messages.status == 200 and isinstance(messages.json()["items"], list)
    assert send("GET", f"{notifications}/v1/citizens/{other_id}/messages", token).status == 403
