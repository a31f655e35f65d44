"""The load generator's client side: open-loop requests, each written down as it ends.

Every request has an intended moment (its place in the day's schedule); it is sent
then whatever happened to earlier ones, and its latency is counted from that moment,
not from when it got a connection, so a slow system cannot slow the load down and
hide its own slowness (no coordinated omission).

Each request ends as one JSON line in the ledger:
`{"kind", "endpoint", "status", "cause", "id", "intended", "sent", "done", ...}`.
`kind` is what the books check ("registration", "dose", "scheduling_run",
"correction", "recall") or "read"; `cause` names why it was not a 2xx (the
problem's `code`, `HTTP 503`, or the exception).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.paths import keys_dir

REQUEST_TIMEOUT = 30.0
# Connections per generator process: enough that the schedule, not the pool, sets the pace.
CONNECTIONS = 256


@dataclass
class Answer:
    """What a request got back: status (None: no answer), JSON body, raw bytes."""

    status: int | None
    body: Any
    done: float


@dataclass
class Traffic:
    """One load generator's requests against the services at `urls`, from wall time `t0`."""

    urls: dict[str, str]
    ledger: IO[str]
    t0: float
    session: aiohttp.ClientSession
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _private: bytes = b""
    _tokens: dict[tuple[str, str | None, str | None], dict[str, str]] = field(default_factory=dict)

    @classmethod
    async def open(cls, urls: dict[str, str], ledger: Path, t0: float) -> Traffic:
        """A session with a large connection pool and a ledger opened for appending."""
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        )
        out = ledger.open("a")
        private, _ = ensure_dev_keys(keys_dir())
        return cls(urls, out, t0, session, _private=private.read_bytes())

    async def close(self) -> None:
        """Wait for the requests in flight, then close the session and the ledger."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        self.note("end")
        await self.session.close()
        self.ledger.close()

    def headers(
        self, role: Role, *, site_id: str | None = None, citizen_id: str | None = None
    ) -> dict[str, str]:
        """Authorization for a role (tokens minted once per principal)."""
        key = (role.value, site_id, citizen_id)
        if key not in self._tokens:
            token = issue_token(self._private, role, site_id=site_id, citizen_id=citizen_id)
            self._tokens[key] = {"Authorization": f"Bearer {token}"}
        return self._tokens[key]

    def now(self) -> float:
        """Seconds into the day."""
        return time.time() - self.t0

    def at(self, moment: float, work: Callable[[float], Coroutine[Any, Any, None]]) -> None:
        """Start `work(moment)` at `moment` seconds into the day, without waiting for it."""

        async def later() -> None:
            await asyncio.sleep(max(moment - self.now(), 0.0))
            await work(moment)

        task = asyncio.create_task(later())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def schedule(
        self, moments: list[float], work: Callable[[float, int], Awaitable[None]]
    ) -> None:
        """Run `work(moment, index)` at each moment (sorted), each on its own, open loop."""
        for index, moment in enumerate(moments):
            await asyncio.sleep(max(moment - self.now(), 0.0))
            task = asyncio.create_task(_call(work, moment, index))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        endpoint: str,
        intended: float,
        kind: str = "read",
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
        id_from: str | None = None,
        **fields: Any,
    ) -> Answer:
        """Send one request (a write carries an Idempotency-Key); write its line; answer.

        `id_from` names the answer's field that identifies what was written (the line's
        `id`, which the books look for); `raw` keeps a 2xx body as bytes (an image)."""
        sent = self.now()
        send_headers = dict(headers or {})
        if method != "GET":
            send_headers["Idempotency-Key"] = str(uuid.uuid4())
        status: int | None = None
        answer: Any = None
        cause: str | None = None
        try:
            async with self.session.request(
                method, self.urls[service] + path, json=body, headers=send_headers
            ) as response:
                status = response.status
                payload = await response.read()
                answer = _decode(payload) if not raw or status >= 400 else payload
        except (aiohttp.ClientError, TimeoutError) as error:
            cause = type(error).__name__
        done = self.now()
        if status is not None and status >= 300:
            code = answer.get("code") if isinstance(answer, dict) else None
            cause = f"{status} {code}" if code else f"HTTP {status}"
        line = {
            "kind": kind,
            "endpoint": endpoint,
            "status": status,
            "cause": cause,
            "intended": round(intended, 4),
            "sent": round(sent, 4),
            "done": round(done, 4),
            **fields,
        }
        if id_from is not None:
            line["id"] = answer.get(id_from) if isinstance(answer, dict) else None
        self.ledger.write(json.dumps(line) + "\n")
        return Answer(status, answer, done)

    async def wait_quiet(self, seconds: float = 180.0) -> None:
        """Until no service has an outbox backlog or consumer lag (the eve's steps depend
        on what the previous one caused)."""
        from immunreg.demo import wait_until_quiet

        if not await asyncio.to_thread(wait_until_quiet, self.urls, seconds):
            raise RuntimeError(f"services still busy {seconds:.0f} s after the eve's step")

    def note(self, kind: str, **fields: Any) -> None:
        """A line that is not a request (a freshness probe's outcome, the end of a run)."""
        self.ledger.write(json.dumps({"kind": kind, "status": None, **fields}) + "\n")


async def _call(work: Callable[[float, int], Awaitable[None]], moment: float, index: int) -> None:
    await work(moment, index)


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None
