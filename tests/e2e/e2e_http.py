"""The one HTTP client of the e2e tests: a request as a client sends it, the answer whole;
and the one way to wait for an effect (`poll`, with a deadline). It also remembers every
personal value a test sends (`SENT_PERSONAL`), for the scan at the end of the run
(test_personal_data_scan.py).

(A module of its own beside conftest.py: tests/e2e is no package.)
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any


@dataclass(frozen=True)
class Answer:
    """Status, body bytes and headers of one response (errors included)."""

    status: int
    raw: bytes
    headers: dict[str, str]

    @property
    def is_json(self) -> bool:
        """JSON or problem+json."""
        return "json" in self.headers.get("Content-Type", "")

    def json(self) -> Any:
        """The body parsed as JSON; None when empty."""
        return json.loads(self.raw) if self.raw else None


# The request fields that carry a person's identity or contact details.
PERSONAL_FIELDS = frozenset(
    {"national_id", "given_name", "family_name", "phone", "email", "contact"}
)
# Every value of those fields any e2e test sent in this run.
SENT_PERSONAL: set[str] = set()


def remember_personal(body: Any) -> None:
    """Add every personal field's value in `body` (at any depth) to SENT_PERSONAL."""
    if isinstance(body, dict):
        for name, value in body.items():
            if name in PERSONAL_FIELDS and isinstance(value, str) and value.strip():
                SENT_PERSONAL.add(value.strip())
            else:
                remember_personal(value)
    elif isinstance(body, list):
        for value in body:
            remember_personal(value)


def send(method: str, url: str, headers: dict[str, str] | None = None, body: Any = None) -> Answer:
    """Send `body` as JSON (when given) and return the answer, whatever its status."""
    remember_personal(body)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}), method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(), dict(error.headers))


def call(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    """`send`, answered as (status, parsed JSON or None)."""
    answer = send(method, url, headers, body)
    return answer.status, answer.json() if answer.is_json else None


def receive_lot(
    inventory: str, logistics: dict[str, str], site: str, product: str, *, vials: int, prefix: str
) -> str:
    """A new lot of `vials` of `product` received at `site` (expiring in 90 days): its
    number, `prefix` and random hex."""
    lot = f"{prefix}{uuid.uuid4().hex[:8].upper()}"
    status, received = call(
        "POST",
        f"{inventory}/v1/lots",
        logistics,
        {
            "lot_number": lot,
            "product_code": product,
            "manufacturer_code": "ORG-100030215",
            "expiry_date": (date.today() + timedelta(days=90)).isoformat(),
            "vials": vials,
            "location_id": site,
        },
    )
    assert status == 201, received
    return lot


def poll(what: str, attempt: Callable[[], tuple[bool, Any]], timeout: float = 90.0) -> Any:
    """Call `attempt` until it says done; what it returned last. Fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        done, last = attempt()
        if done:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting until {what}; last: {last}")


def follow(
    accepted: Answer,
    base: str,
    headers: dict[str, str],
    pending: Collection[str],
    seconds: float = 120.0,
) -> Any:
    """Read the `Location` of a 202 (a background run) until its `status` leaves `pending`;
    its last body. Fails when it is still pending after `seconds`."""
    assert accepted.status == 202, accepted.json()
    location = accepted.headers["Location"]
    body = accepted.json()
    deadline = time.monotonic() + seconds
    while body["status"] in pending:
        assert time.monotonic() < deadline, f"{location} still {body['status']}: {body}"
        time.sleep(0.2)
        answer = send("GET", base + location, headers)
        assert answer.status == 200, answer.json()
        body = answer.json()
    return body


def scheduling_run(base: str, admin: dict[str, str], body: dict[str, Any]) -> Any:
    """Start a scheduling run (202) and follow it until it has completed; its counts."""
    accepted = send("POST", f"{base}/v1/scheduling/runs", admin, body)
    run = follow(accepted, base, admin, {"queued", "running"})
    assert run["status"] == "completed", run
    return run
