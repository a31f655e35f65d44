"""The fault matrix: each fault under a steady stream of writes, then the books checked.

Every case runs against one stack of its own (tests/faults/stack.py) while a
separate process (tests/faults/traffic.py) registers citizens, records doses and
starts scheduling runs over HTTP. After the fault is repaired and the traffic has
stopped, the books must balance (libs/immunreg/books.py): zero lost and zero
duplicated accepted writes, outboxes drained, no dead letters, projections equal to
a rebuild. The books are cumulative: each case checks every write since the start.

`make test` runs the short form (FAULT_CASES unset: a service killed, the broker
restarted); `make faults` runs every case (FAULT_CASES=all) and writes the table to
bench/faults.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from immunreg.books import Books, Ledger, check_books
from immunreg.config import DEFAULT_PORTS
from immunreg.discovery import available_services, load_service
from immunreg.http.auth import Role
from immunreg.paths import REPO_ROOT, keys_dir, state_dir

from .stack import FaultStack
from .traffic import PRODUCT

pytestmark = pytest.mark.faults

SITE = "SITE-FAULTS"
LOT = "FAULTLOT1"
# How long the traffic runs before the fault, and after the repair, in seconds.
BEFORE_SECONDS = float(os.environ.get("FAULT_BEFORE_SECONDS", "6"))
AFTER_SECONDS = float(os.environ.get("FAULT_AFTER_SECONDS", "6"))
# How long a fault lasts before it is repaired (a broker or database down, a paused
# consumer: longer than the consumer's 10 s session timeout).
DOWN_SECONDS = float(os.environ.get("FAULT_DOWN_SECONDS", "5"))
PAUSE_SECONDS = 15.0
TRAFFIC_RATE = float(os.environ.get("FAULT_TRAFFIC_RATE", "12"))
# `make faults` names the file its table goes to; the short form writes none.
RESULTS = os.environ.get("FAULT_RESULTS")


@dataclass
class CaseResult:
    case: str
    accepted: int
    found: int
    unanswered: int
    retried: int
    recovery_seconds: float
    problems: list[str]


Fault = Callable[[FaultStack], float]


def _kill_and_restart(name: str) -> Fault:
    def fault(stack: FaultStack) -> float:
        stack.kill(name)
        time.sleep(1)
        started = time.monotonic()
        stack.restart(name)
        return time.monotonic() - started + stack.wait_ready()

    return fault


def _pause_consumer(stack: FaultStack) -> float:
    # Booking consumes three topics: paused past its session timeout, the group
    # coordinator evicts it; resumed, it must rejoin and go on from its stored position.
    stack.pause("booking")
    time.sleep(PAUSE_SECONDS)
    started = time.monotonic()
    stack.resume("booking")
    return time.monotonic() - started + stack.wait_ready()


def _replica_killed(stack: FaultStack) -> float:
    # Two administration processes share the schema, the consumer group and the relay
    # lock; the traffic spreads over both; one dies mid-stream.
    stack.kill("administration", replica=0)
    started = time.monotonic()
    stack.restart("administration", replica=0)
    return time.monotonic() - started + stack.wait_ready()


def _every_relay_leader_killed(stack: FaultStack) -> float:
    # Two replicas of every service share its schema: the HTTP traffic spreads over both,
    # the consumer group splits the partitions, one relay leads. The leader of each is
    # killed for good, all at once; the other replica must take the lead, the group must
    # hand the dead one's partitions over, and the books must still balance.
    leaders = {name: _one_leader(stack, name) for name in stack.replicas}
    for name, leader in leaders.items():
        stack.retire(name, leader)
    started = time.monotonic()
    deadline = started + 120
    while any(stack.relay_leaders(name) != [0] for name in leaders):
        assert time.monotonic() < deadline, {n: stack.relay_leaders(n) for n in leaders}
        time.sleep(0.5)
    # Until Kafka drops a dead member (its session timeout), its partitions are nobody's
    # and the survivors' lag says nothing of them: wait for each group to be the survivor.
    groups = [name for name in leaders if load_service(name).reactions is not None]
    while not all(stack.group_settled(name) for name in groups):
        assert time.monotonic() < deadline, "consumer groups did not drop the dead replicas"
        time.sleep(0.5)
    return time.monotonic() - started + stack.wait_ready()


def _one_leader(stack: FaultStack, name: str) -> int:
    """The replica whose relay leads (exactly one must, once the lock has been taken)."""
    deadline = time.monotonic() + 60
    while len(leaders := stack.relay_leaders(name)) != 1:
        assert time.monotonic() < deadline, f"{name}: relay leaders {leaders}"
        time.sleep(0.5)
    return leaders[0]


def _two_of_every_service(stack: FaultStack) -> None:
    for name, group in stack.replicas.items():
        if len(group) < 2:
            stack.add_replica(name)


def _two_administration_replicas(stack: FaultStack) -> None:
    stack.add_replica("administration")


CASES: dict[str, Fault] = {
    **{f"kill -9 {name}": _kill_and_restart(name) for name in DEFAULT_PORTS},
    "restart Kafka": lambda stack: stack.restart_server(stack.kafka, DOWN_SECONDS),
    "restart PostgreSQL": lambda stack: stack.restart_server(stack.postgres, DOWN_SECONDS),
    "pause booking past its session timeout": _pause_consumer,
    "two administration replicas, one killed": _replica_killed,
    "two replicas of every service and each relay leader killed": _every_relay_leader_killed,
}
# What a case needs before its traffic starts.
PREPARE: dict[str, Callable[[FaultStack], None]] = {
    "two administration replicas, one killed": _two_administration_replicas,
    "two replicas of every service and each relay leader killed": _two_of_every_service,
}
SHORT_FORM = (
    "kill -9 administration",
    "restart Kafka",
    "two replicas of every service and each relay leader killed",
)


def _chosen_cases() -> list[str]:
    wanted = os.environ.get("FAULT_CASES", "")
    if wanted == "all":
        return list(CASES)
    if wanted:
        names = [n.strip() for n in wanted.split(",") if n.strip()]
        unknown = [n for n in names if n not in CASES]
        if unknown:
            raise pytest.UsageError(f"FAULT_CASES names unknown cases {unknown}: {list(CASES)}")
        return names
    return list(SHORT_FORM)


@pytest.fixture(scope="module")
def stack(infra: dict[str, str]) -> Iterator[FaultStack]:
    names = available_services()
    if set(names) != set(DEFAULT_PORTS):
        pytest.skip("the fault matrix needs every service")
    root = state_dir() / "test-runs" / f"faults-{uuid.uuid4().hex[:8]}"
    running = FaultStack.start(root, names)
    try:
        _stock_the_site(running)
        yield running
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


def _stock_the_site(stack: FaultStack) -> None:
    """A site booking can fill and a lot at it, so doses and bookings can happen."""
    from immunreg.demo import DemoClient, wait_until_quiet

    booking = DemoClient(stack.urls["booking"])
    answer = booking.request(
        "PUT",
        f"/v1/sites/{SITE}",
        {
            "name": "Dom zdravlja (faults)",
            "municipality_code": "70092",
            "address": "Svetosavska 1",
            "latitude": 44.58,
            "longitude": 20.42,
            "daily_capacity": {PRODUCT: 5000},
        },
    )
    assert answer.status == 201, answer
    inventory = DemoClient(stack.urls["inventory"], role=Role.LOGISTICS)
    answer = inventory.request(
        "POST",
        "/v1/lots",
        {
            "lot_number": LOT,
            "product_code": PRODUCT,
            "manufacturer_code": "ORG-100030215",
            "expiry_date": (date.today() + timedelta(days=90)).isoformat(),
            "vials": 5000,
            "location_id": SITE,
        },
    )
    assert answer.status == 201, answer
    assert wait_until_quiet(stack.urls, 120), "the stack did not settle after stocking"


@pytest.fixture(scope="module")
def results() -> Iterator[list[CaseResult]]:
    collected: list[CaseResult] = []
    yield collected
    if collected and RESULTS:
        _write_table(collected, Path(RESULTS))


def _run_case(stack: FaultStack, case: str, index: int) -> CaseResult:
    writes = stack.root / f"writes-{index:02d}.jsonl"
    if case in PREPARE:
        PREPARE[case](stack)
    env = {**os.environ, **stack.env}
    traffic = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.faults.traffic",
            "--urls",
            json.dumps(stack.replica_urls),
            "--out",
            str(writes),
            "--site",
            SITE,
            "--lot",
            LOT,
            "--first",
            str(index * 20_000),
            "--rate",
            str(TRAFFIC_RATE),
        ],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(stack.root / f"traffic-{index:02d}.log").open("wb"),
    )
    try:
        time.sleep(BEFORE_SECONDS)
        recovery = CASES[case](stack)
        time.sleep(AFTER_SECONDS)
    finally:
        traffic.send_signal(signal.SIGTERM)
        traffic.wait(180)
    assert traffic.returncode == 0, (stack.root / f"traffic-{index:02d}.log").read_text()[-3000:]
    ledger = Ledger(
        [w for path in sorted(stack.root.glob("writes-*.jsonl")) for w in Ledger.read(path).writes]
    )
    books: Books = asyncio.run(check_books(ledger, urls=stack.urls, keys=keys_dir(), env=env))
    this_case = Ledger.read(writes)
    return CaseResult(
        case=case,
        accepted=books.accepted,
        found=books.found,
        unanswered=books.unanswered,
        retried=sum(1 for w in this_case.writes if w.get("attempts", 1) > 1),
        recovery_seconds=round(recovery, 1),
        problems=books.problems,
    )


@pytest.mark.parametrize("case", _chosen_cases())
def test_the_books_balance_after(case: str, stack: FaultStack, results: list[CaseResult]) -> None:
    result = _run_case(stack, case, len(results))
    results.append(result)
    assert result.accepted > 0, "the traffic had no write accepted"
    assert result.problems == [], "\n".join(result.problems)
    assert result.found == result.accepted


def _write_table(results: list[CaseResult], path: Path) -> None:
    lines = [
        "# Fault matrix",
        "",
        f"Written by `make faults` on {date.today()}; "
        "the books are cumulative (each row counts every write since the stack started).",
        "",
        "| case | writes accepted | writes found once | unanswered | "
        "retried (5xx, refused or timed out, then resent with its key) | recovery (s) | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        verdict = "passed" if not r.problems and r.found == r.accepted else "FAILED"
        lines.append(
            f"| {r.case} | {r.accepted} | {r.found} | {r.unanswered} | {r.retried} | "
            f"{r.recovery_seconds} | {verdict} |"
        )
    path.write_text("\n".join(lines) + "\n")
