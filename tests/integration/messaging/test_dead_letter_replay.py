"""`immunreg dlq list|replay` against the real Kafka, PostgreSQL and consumer loop."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from immunreg.contracts.envelope import Envelope
from immunreg.contracts.topics import dlq_topic
from immunreg.eventstore import EventStore, OutboxSignal
from immunreg.eventstore.database import Connection
from immunreg.eventstore.relay import OutboxRelay
from immunreg.messaging import EventConsumer, Reactions, dead_letters
from immunreg.messaging.dead_letters import REPLAY_OF_HEADER, replay_dead_letters
from immunreg.paths import REPO_ROOT
from tally import Counted, tally_context

from ..conftest import SchemaFactory, unique_name
from ..support.consumer_process import APPLICATIONS_DDL, counting_reactions, record_application
from ..support.kafka import KafkaTools
from .test_consumer import background, wait_until

APPLIED = "SELECT count(*) FROM applications"


async def immunreg(bootstrap: str, *args: str) -> str:
    """Run the real command line; its stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "immunreg.cli",
        *args,
        "--bootstrap",
        bootstrap,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def as_json(bootstrap: str, *args: str) -> Any:
    return msgspec.json.decode(await immunreg(bootstrap, *args, "--json"))


class ReplayCrashed(Exception):
    pass


class DiesBeforeCommit(AIOKafkaProducer):  # type: ignore[misc]
    """A replay whose process dies after sending, before its transaction commits."""

    async def commit_transaction(self) -> None:
        raise ReplayCrashed

    async def abort_transaction(self) -> None:
        pass  # a dead process aborts nothing


async def test_a_dead_letter_is_listed_then_replayed_exactly_once_after_the_fix(
    make_schema: SchemaFactory,
    dsn: str,
    bootstrap: str,
    kafka: KafkaTools,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema, pool = await make_schema()
    await pool.execute(APPLICATIONS_DDL)
    _, bystander_pool = await make_schema()  # another group, which never failed
    await bystander_pool.execute(APPLICATIONS_DDL)
    name = unique_name()
    ctx = tally_context(name)
    group = f"group-{name}"
    await kafka.create(ctx.topic, dlq_topic(ctx.topic))
    store = EventStore(pool)
    for n, amount in enumerate((1, 2, 3)):
        await store.append(f"s{n}", "Tally", 0, [Counted(amount=amount)], context=ctx)
    [failing] = await store.load("s1")

    broken = True
    reactions = Reactions()

    @reactions.on(ctx, Counted)
    async def counted(conn: Connection, event: Counted, envelope: Envelope) -> None:
        if broken and event.amount == 2:
            raise RuntimeError("lot lookup failed")
        await record_application(conn, envelope)

    relay_signal = OutboxSignal(schema)
    relay = OutboxRelay(dsn, schema, bootstrap, signal=relay_signal, poll_interval=0.1)
    consumer = EventConsumer(
        pool, bootstrap, group, reactions, signal=relay_signal, max_attempts=2, backoff=0.01
    )
    bystander = EventConsumer(
        bystander_pool, bootstrap, f"bystander-{name}", counting_reactions(ctx)
    )
    async with background(relay.run(), consumer.run(), bystander.run()):
        await wait_until(pool, APPLIED, 2)
        await wait_until(bystander_pool, APPLIED, 3)
        await kafka.read_all(dlq_topic(ctx.topic), expect=1, settle=0)

        # Inspect: the dead letter, where it came from and why.
        [letter] = await as_json(bootstrap, "dlq", "list", ctx.topic)
        assert letter["source_topic"] == ctx.topic
        assert letter["source_offset"] >= 0 and letter["source_partition"] >= 0
        assert (letter["event_type"], letter["event_id"]) == ("Counted", str(failing.event_id))
        assert (letter["stream_id"], letter["group"]) == ("s1", group)
        assert letter["reason"] == "RuntimeError: lot lookup failed"
        assert letter["failed_at"] and letter["replayed_at"] is None
        table = await immunreg(bootstrap, "dlq", "list", ctx.topic)
        assert "EVENT ID" in table.splitlines()[0]
        assert str(failing.event_id) in table and "lot lookup failed" in table

        dry = await as_json(bootstrap, "dlq", "replay", ctx.topic, "--dry-run")
        assert [d["event_id"] for d in dry["replayed"]] == [str(failing.event_id)]
        elsewhere = await as_json(bootstrap, "dlq", "replay", ctx.topic, "--group", "nobody")
        assert elsewhere["replayed"] == []

        broken = False  # the fix is deployed

        # A replay that dies mid-transaction publishes nothing anyone reads...
        monkeypatch.setattr(dead_letters, "_replay_producer", _dying_producer)
        with pytest.raises(ReplayCrashed):
            await replay_dead_letters(bootstrap, ctx.topic)
        monkeypatch.undo()
        # ...and the next one fences it, then replays.
        first = await as_json(bootstrap, "dlq", "replay", ctx.topic)
        assert [d["event_id"] for d in first["replayed"]] == [str(failing.event_id)]
        await wait_until(pool, APPLIED, 3)

        second = await as_json(bootstrap, "dlq", "replay", ctx.topic)
        assert (second["replayed"], second["already_replayed"]) == ([], 1)
        assert "replayed 0 dead letter(s)" in await immunreg(bootstrap, "dlq", "replay", ctx.topic)

        # One copy went back to the source partition; both groups read past it.
        copies = [
            r
            for r in await kafka.read_all(ctx.topic, expect=4, settle=0.5)
            if REPLAY_OF_HEADER in dict(r.headers or ())
        ]
        assert len(copies) == 1 and copies[0].partition == letter["source_partition"]
        sent = await kafka.read_all(
            ctx.topic, expect=5, settle=0.5, isolation_level="read_uncommitted"
        )
        crashed = [r for r in sent if REPLAY_OF_HEADER in dict(r.headers or ())]
        assert len(crashed) == 2, "the crashed replay did send its copy, which was aborted"
        for some_pool in (pool, bystander_pool):
            await wait_until(
                some_pool,
                "SELECT count(*) FROM consumer_positions "
                f"WHERE partition = {copies[0].partition} AND next_offset > {copies[0].offset}",
                1,
            )

    assert await pool.fetchval(APPLIED) == 3
    assert await pool.fetchval("SELECT count(*) FROM applications WHERE stream_id = 's1'") == 1
    # The group that had applied the event skipped the replayed copy by its event id.
    assert await bystander_pool.fetchval(APPLIED) == 3
    [after] = await as_json(bootstrap, "dlq", "list", ctx.topic)
    assert after["replayed_at"] is not None


def _dying_producer(bootstrap: str, topic: str) -> AIOKafkaProducer:
    return DiesBeforeCommit(
        bootstrap_servers=bootstrap,
        transactional_id=f"immunreg-dlq-replay-{topic}",
        enable_idempotence=True,
        acks="all",
    )
