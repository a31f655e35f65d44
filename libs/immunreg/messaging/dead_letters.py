"""Dead letters: read what consumers put on `<topic>.dlq`, and replay it to `<topic>`.

The consumer loop dead-letters a message it cannot handle by copying it, with
`dlq-*` headers (group, reason, source topic, partition and offset, when), to
`<topic>.dlq` through its outbox. Once the handler is fixed, `replay` publishes
each such message again to its source partition, and the consumer applies it.

Exactly once. Each chunk of a replay is one Kafka transaction holding both the
republished messages and, on the dead-letter topic itself, one replay marker
per dead letter (header `dlq-replay-of: <partition>:<offset>`). Both commit or
neither does. The replay producer's transactional id is fixed per topic and it
starts before the dead letters are read: starting it fences a replay that is
still running or that died mid-transaction (its messages are aborted, never
seen by read_committed consumers), so the markers read next are the complete
record of what was replayed. A second replay therefore republishes nothing.

Why markers on the dead-letter topic, rather than
- committed offsets of a replay consumer group: Kafka deletes the offsets of a
  group idle longer than `offsets.retention.minutes` (7 days by default), after
  which every dead letter would look new again; and an offset says "everything
  before here", while `--group` replays only some entries;
- a table in PostgreSQL: the command would need a database of its own (each
  service has its own schema), and a row cannot commit together with a Kafka
  publish, so a crash between the two would republish anyway.
The markers need nothing but Kafka, commit atomically with the republished
messages, and live as long as the dead letters (DLQ topics are kept forever,
like event topics).

Behind that, consumers dedupe by event id (`processed_events`): a group that
applied the event before skips the republished copy, and the group that
dead-lettered it never recorded it (its savepoint was rolled back), so that
group applies it now, once. A replayed event arrives after later events of
its stream; handlers already have to tolerate that for any dead letter.

Messages whose envelope does not decode are listed but never replayed: every
group would only dead-letter them again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from immunreg.contracts.envelope import decode_envelope
from immunreg.contracts.topics import dlq_topic
from immunreg.messaging.connection import client_options
from immunreg.messaging.topics import read_topic
from immunreg.messaging.transactions import kafka_transaction
from immunreg.structs import Struct

REPLAY_OF_HEADER = "dlq-replay-of"
REPLAYED_AT_HEADER = "dlq-replayed-at"


class DeadLetter(Struct):
    """One dead-lettered message: where it came from, why, and whether it was replayed."""

    dlq_partition: int
    dlq_offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    group: str
    reason: str
    failed_at: str
    event_type: str | None
    event_id: str | None
    stream_id: str | None
    replayed_at: str | None = None

    @property
    def replayable(self) -> bool:
        """Whether its envelope decodes (only then can a fixed handler apply it)."""
        return self.event_id is not None

    @property
    def position(self) -> str:
        """`<partition>:<offset>` on the dead-letter topic: what a marker names."""
        return f"{self.dlq_partition}:{self.dlq_offset}"


class ReplayReport(Struct):
    """What a replay did (or, with dry_run, would do)."""

    topic: str
    dry_run: bool
    replayed: list[DeadLetter]
    already_replayed: int
    not_replayable: list[DeadLetter]


def source_topic_of(topic: str) -> str:
    """Accept either `<topic>` or `<topic>.dlq` on the command line."""
    suffix = dlq_topic("")
    return topic[: -len(suffix)] if topic.endswith(suffix) else topic


async def list_dead_letters(
    bootstrap: str, topic: str, *, group: str | None = None
) -> list[DeadLetter]:
    """Every dead letter of `topic` (optionally only those of one consumer group)."""
    letters, _ = await _read(bootstrap, topic)
    return [letter for letter in letters if group is None or letter.group == group]


async def replay_dead_letters(
    bootstrap: str,
    topic: str,
    *,
    group: str | None = None,
    dry_run: bool = False,
    chunk: int = 500,
) -> ReplayReport:
    """Republish every dead letter of `topic` not replayed yet, exactly once (see module)."""
    topic = source_topic_of(topic)
    producer = None if dry_run else _replay_producer(bootstrap, topic)
    try:
        if producer is not None:
            await producer.start()  # fences an earlier replay before reading its markers
        letters, records = await _read(bootstrap, topic)
        chosen = [letter for letter in letters if group is None or letter.group == group]
        pending = [letter for letter in chosen if letter.replayed_at is None]
        todo = [letter for letter in pending if letter.replayable]
        if producer is not None:
            for start in range(0, len(todo), chunk):
                await _publish(producer, topic, todo[start : start + chunk], records)
        return ReplayReport(
            topic=topic,
            dry_run=dry_run,
            replayed=todo,
            already_replayed=len(chosen) - len(pending),
            not_replayable=[letter for letter in pending if not letter.replayable],
        )
    finally:
        if producer is not None:
            await producer.stop()


def _replay_producer(bootstrap: str, topic: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_options(),
        transactional_id=f"immunreg-dlq-replay-{topic}",
        enable_idempotence=True,
        acks="all",
    )


async def _publish(
    producer: AIOKafkaProducer,
    topic: str,
    letters: list[DeadLetter],
    records: dict[str, ConsumerRecord],
) -> None:
    """One transaction: the messages back on their source partitions, and their markers."""
    now = datetime.now(UTC).isoformat().encode()
    sent: set[str] = set()
    # A process that dies in here aborts nothing: the next replay's producer (same
    # transactional id) fences its transaction.
    async with kafka_transaction(producer) as deliveries:
        for letter in letters:
            record = records[letter.position]
            replay_of = letter.position.encode()
            # The same event dead-lettered by two groups goes back once.
            if letter.event_id not in sent:
                assert letter.event_id is not None
                sent.add(letter.event_id)
                deliveries.append(
                    await producer.send(
                        letter.source_topic,
                        value=record.value,
                        key=record.key,
                        partition=letter.source_partition,
                        headers=[(REPLAY_OF_HEADER, replay_of)],
                    )
                )
            deliveries.append(
                await producer.send(
                    dlq_topic(topic),
                    value=b"",
                    key=record.key,
                    partition=letter.dlq_partition,
                    headers=[(REPLAY_OF_HEADER, replay_of), (REPLAYED_AT_HEADER, now)],
                )
            )


async def _read(bootstrap: str, topic: str) -> tuple[list[DeadLetter], dict[str, ConsumerRecord]]:
    """The dead letters of `topic` with their replay state, and their raw records by position."""
    records = await read_topic(bootstrap, dlq_topic(source_topic_of(topic)))
    replayed: dict[str, str] = {}
    letters: list[DeadLetter] = []
    raw: dict[str, ConsumerRecord] = {}
    for record in records:
        headers = _headers(record.headers)
        if REPLAY_OF_HEADER in headers:
            replayed.setdefault(headers[REPLAY_OF_HEADER], headers.get(REPLAYED_AT_HEADER, "?"))
            continue
        letter = _dead_letter(record, headers)
        letters.append(letter)
        raw[letter.position] = record
    return [
        msgspec.structs.replace(letter, replayed_at=replayed.get(letter.position))
        for letter in letters
    ], raw


def _headers(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    return {key: value.decode(errors="replace") for key, value in headers or ()}


def _dead_letter(record: ConsumerRecord, headers: dict[str, str]) -> DeadLetter:
    event_type = event_id = stream_id = None
    try:
        envelope = decode_envelope(record.value or b"")
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass  # listed as not replayable
    else:
        event_type, event_id, stream_id = envelope.type, str(envelope.event_id), envelope.stream_id
    return DeadLetter(
        dlq_partition=record.partition,
        dlq_offset=record.offset,
        source_topic=headers.get("dlq-source-topic", ""),
        source_partition=int(headers.get("dlq-source-partition", "-1")),
        source_offset=int(headers.get("dlq-source-offset", "-1")),
        group=headers.get("dlq-group", ""),
        reason=headers.get("dlq-reason", ""),
        failed_at=headers.get("dlq-failed-at", ""),
        event_type=event_type,
        event_id=event_id,
        stream_id=stream_id,
    )
