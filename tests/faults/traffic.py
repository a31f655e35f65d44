"""A steady stream of registrations, doses and scheduling runs, from a process of its own.

    python -m tests.faults.traffic --urls '{"registration": "http://127.0.0.1:..."}' \
        --out writes.jsonl --site SITE-F1 --lot F1LOT --first 0 [--rate 12] [--seconds 600]

It behaves as a careful client does: every write carries an Idempotency-Key, and a
write that gets a 5xx, a 429, a refused connection or a timeout is sent again with
the same key (backing off) until it gets an answer or RETRY_SECONDS pass. Every
write's last outcome goes to --out as one JSON line, so the books can be checked
against what the clients were told. SIGTERM (or --seconds) ends it after the
writes in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
import uuid
from collections import deque
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import aiohttp

from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.paths import keys_dir
from services.registration import jmbg

PRODUCT = "EU/1/20/1528"
MUNICIPALITY = "70092"
# How long a write is retried with its key before the client gives up on it.
RETRY_SECONDS = 90.0
REQUEST_TIMEOUT = 10.0
# Statuses after which a careful client tries again with the same key.
RETRYABLE = frozenset({429, 500, 502, 503, 504})


class Traffic:
    """The clients' side: what was sent, what was answered, written down as it happens."""

    def __init__(
        self, urls: dict[str, list[str]], site: str, lot: str, first: int, out: IO[str]
    ) -> None:
        # Several base URLs for a service are its replicas: each try goes to the next one,
        # as a load balancer would send a retry elsewhere.
        self.urls = urls
        self.site = site
        self.lot = lot
        self.serial = first
        self.out = out
        private, _ = ensure_dev_keys(keys_dir())
        key = private.read_bytes()
        self.admin = {"Authorization": f"Bearer {issue_token(key, Role.ADMIN)}"}
        staff = issue_token(key, Role.SITE_STAFF, site_id=site)
        self.staff = {"Authorization": f"Bearer {staff}"}
        # Citizens registered and not yet given a dose (administration learns of them
        # through Kafka; until it has, a dose is refused as citizen_unknown).
        self.undosed: deque[tuple[str, float]] = deque()
        self.stopping = asyncio.Event()

    def record(self, kind: str, key: str, status: int | None, **fields: Any) -> None:
        line = {"kind": kind, "key": key, "status": status, "at": time.time(), **fields}
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    async def send(
        self,
        session: aiohttp.ClientSession,
        service: str,
        path: str,
        body: Any,
        headers: dict[str, str],
    ) -> tuple[int | None, Any, str | None, int]:
        """POST with one Idempotency-Key until answered; (status, body, last error, attempts)."""
        key = str(uuid.uuid4())
        deadline = time.monotonic() + RETRY_SECONDS
        attempts = 0
        error: str | None = None
        replicas = self.urls[service]
        first = random.randrange(len(replicas))
        while True:
            url = replicas[(first + attempts) % len(replicas)] + path
            attempts += 1
            try:
                async with session.request(
                    "POST", url, json=body, headers={**headers, "Idempotency-Key": key}
                ) as response:
                    answer = await response.json(content_type=None)
                    if response.status not in RETRYABLE:
                        return response.status, answer, None, attempts
                    error = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                return None, None, error, attempts
            await asyncio.sleep(min(0.2 * attempts, 2.0))

    async def register(self, session: aiohttp.ClientSession) -> None:
        self.serial += 1
        born = date(1940, 1, 1) + timedelta(days=self.serial // 800)
        national_id = jmbg.make(born, 71, 100 + self.serial % 800)
        body = {
            "national_id": national_id,
            "given_name": "Jelena",
            "family_name": "Petrović",
            "birth_date": born.isoformat(),
            "sex": random.choice(["female", "male"]),
            "municipality_code": MUNICIPALITY,
            "email": "jelena@example.rs",
            "vaccine_preferences": ["any"],
            "consent": {"data_processing": True},
        }
        status, answer, error, attempts = await self.send(
            session, "registration", "/v1/citizens", body, self.admin
        )
        citizen_id = answer.get("citizen_id") if isinstance(answer, dict) else None
        self.record(
            "registration", national_id, status, id=citizen_id, error=error, attempts=attempts
        )
        if status == 201 and citizen_id:
            self.undosed.append((citizen_id, time.monotonic()))

    async def dose(self, session: aiohttp.ClientSession) -> None:
        if not self.undosed or time.monotonic() - self.undosed[0][1] < 2.0:
            return
        citizen_id, _ = self.undosed.popleft()
        body = {
            "citizen_id": citizen_id,
            "site_id": self.site,
            "product_code": PRODUCT,
            "lot_number": self.lot,
            "dose_number": 1,
            "administered_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "vaccinator_id": "V-FAULTS",
            "injection_site": "left_arm",
        }
        status, answer, error, attempts = await self.send(
            session, "administration", "/v1/doses", body, self.staff
        )
        if status == 422 and isinstance(answer, dict) and answer.get("code") == "citizen_unknown":
            # Not a write: administration has not heard of the citizen yet. Later.
            self.undosed.append((citizen_id, time.monotonic()))
            return
        dose_id = answer.get("dose_id") if isinstance(answer, dict) else None
        self.record(
            "dose",
            citizen_id,
            status,
            id=dose_id,
            error=error,
            attempts=attempts,
            answer=None if status in (200, 201) else answer,
        )

    async def schedule(self, session: aiohttp.ClientSession) -> None:
        body = {"horizon_days": 3}
        status, answer, error, attempts = await self.send(
            session, "booking", "/v1/scheduling/runs", body, self.admin
        )
        run_id = answer.get("run_id") if isinstance(answer, dict) else None
        self.record(
            "scheduling_run", run_id or "", status, id=run_id, error=error, attempts=attempts
        )

    async def worker(self, session: aiohttp.ClientSession, index: int, interval: float) -> None:
        turn = index
        while not self.stopping.is_set():
            started = time.monotonic()
            turn += 1
            if index == 0 and turn % 40 == 0:
                await self.schedule(session)
            elif turn % 2:
                await self.register(session)
            else:
                await self.dose(session)
            await asyncio.sleep(max(interval - (time.monotonic() - started), 0))


async def main_async(args: argparse.Namespace) -> None:
    urls = json.loads(args.urls)
    with Path(args.out).open("a") as out:  # noqa: ASYNC230 (opened once, before any I/O)
        traffic = Traffic(urls, args.site, args.lot, args.first, out)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, traffic.stopping.set)
        loop.add_signal_handler(signal.SIGINT, traffic.stopping.set)
        loop.call_later(args.seconds, traffic.stopping.set)
        workers = 4
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(
                *(traffic.worker(session, i, workers / args.rate) for i in range(workers))
            )
        traffic.record("end", "", None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.traffic")
    parser.add_argument("--urls", required=True, help="JSON: service name -> [base URL, ...]")
    parser.add_argument("--out", required=True, help="where each write's outcome goes (JSONL)")
    parser.add_argument("--site", required=True)
    parser.add_argument("--lot", required=True)
    parser.add_argument("--first", type=int, default=0, help="first serial (unique per run)")
    parser.add_argument("--rate", type=float, default=12.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
