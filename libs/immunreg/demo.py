"""Demo data for `make run`: each service that has some contributes it.

A service declares a loader, `Service.demo`: `load(urls: dict[str, str]) -> str`
(returning a one-line summary). They run in the order the data flows
(citizens and stock before bookings, bookings before doses), over HTTP as a
client would; between steps the loader waits until every service has
published its outbox and its consumers have caught up, so each step sees
what the previous one caused.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from immunreg.discovery import load_service
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.paths import keys_dir


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers and the decoded JSON body (None if empty)."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def replayed(self) -> bool:
        """The server answered from its Idempotency-Key record: done before."""
        return self.headers.get("Idempotent-Replayed") == "true"


@dataclass
class DemoClient:
    """JSON over HTTP with a development token, as the demo loaders' callers would."""

    base: str
    role: Role = Role.ADMIN
    site_id: str | None = None
    subject: str = "demo-loader"
    timeout: float = 30.0
    token: str = field(init=False)

    def __post_init__(self) -> None:
        private, _ = ensure_dev_keys(keys_dir())
        self.token = issue_token(
            private.read_bytes(), self.role, subject=self.subject, site_id=self.site_id
        )

    def request(
        self, method: str, path: str, body: Any = None, *, idempotency_key: str | None = None
    ) -> Answer:
        """Send one request; HTTP errors are answers too (the caller decides)."""
        data = None if body is None else json.dumps(body, sort_keys=True).encode()
        headers = {"Authorization": f"Bearer {self.token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(
            self.base + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Answer(response.status, dict(response.headers), _json(response.read()))
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), _json(error.read()))

    def follow(self, accepted: Answer, pending: Collection[str], seconds: float) -> Any:
        """Poll the `Location` of a 202 (a background run) until its `status` is no longer
        one of `pending`, or `seconds` pass; its last body."""
        body = accepted.body
        deadline = time.monotonic() + seconds
        while body["status"] in pending and time.monotonic() < deadline:
            time.sleep(0.5)
            body = self.request("GET", accepted.headers["Location"]).body
        return body


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


ORDER = (
    "registration",
    "inventory",
    "booking",
    "supply",
    "administration",
    "certificates",
    "projections",
)

_GAUGE = re.compile(
    r"^(immunreg_consumer_lag_messages|immunreg_outbox_backlog)(\{[^}]*\})? ([0-9.eE+-]+)$",
    re.MULTILINE,
)


def delivery_backlog(url: str) -> dict[str, float]:
    """Consumer lag (messages) and unpublished outbox rows, as the service itself reports
    them on /metrics; both infinite when it does not answer."""
    backlog = {"immunreg_consumer_lag_messages": 0.0, "immunreg_outbox_backlog": 0.0}
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return {name: float("inf") for name in backlog}
    for name, _, value in _GAUGE.findall(text):
        backlog[name] += float(value)
    return backlog


def _busy(url: str) -> float:
    """Unpublished outbox rows plus consumer lag."""
    return sum(delivery_backlog(url).values())


def wait_until_quiet(urls: dict[str, str], seconds: float = 60.0) -> bool:
    """Wait until no service has outbox backlog or consumer lag (twice in a row)."""
    deadline = time.monotonic() + seconds
    quiet_polls = 0
    while time.monotonic() < deadline:
        quiet_polls = quiet_polls + 1 if all(_busy(u) == 0 for u in urls.values()) else 0
        if quiet_polls >= 2:
            return True
        time.sleep(1.0)
    return False


def load_demo_data(urls: dict[str, str]) -> None:
    """Run every service's demo loader against the running services."""
    for name in ORDER:
        loader = load_service(name).demo if name in urls else None
        if loader is None:
            continue
        if not wait_until_quiet(urls):
            print("[demo] services still busy after 60 s; going on", file=sys.stderr)
        summary = loader(urls)
        print(f"[demo] {name}: {summary}", file=sys.stderr, flush=True)
