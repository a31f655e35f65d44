"""Envelopes and contexts: the published language round-trips and refuses strangers."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from immunreg.contracts import Context, Event, Metadata, decode_envelope, encode_envelope
from immunreg.contracts.envelope import new_event_id, new_id_text
from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE, all_topics, dlq_topic, events_topic


class ThingHappened(Event, frozen=True):
    thing_id: str
    size: int = 1


class OtherHappened(Event, frozen=True):
    note: str


class Unrelated(Event, frozen=True):
    x: int


CTX = Context("demo", [ThingHappened, OtherHappened])


def test_an_envelope_round_trips_with_its_metadata() -> None:
    correlation = uuid.uuid4()
    occurred = datetime(2021, 3, 1, 8, 30, tzinfo=UTC)
    envelope = CTX.envelope(
        ThingHappened(thing_id="t-1", size=3),
        stream_id="t-1",
        stream_type="Thing",
        version=4,
        metadata=Metadata(correlation_id=correlation, occurred_at=occurred),
    )

    decoded = decode_envelope(encode_envelope(envelope))

    assert decoded == envelope
    assert decoded.type == "ThingHappened"
    assert decoded.occurred_at == occurred and decoded.recorded_at >= occurred
    assert decoded.correlation_id == correlation
    assert decoded.event_id.version == 7
    assert CTX.decode(decoded.data) == ThingHappened(thing_id="t-1", size=3)


def test_event_ids_are_time_ordered() -> None:
    first = CTX.envelope(OtherHappened(note="a"), stream_id="s", stream_type="S", version=1)
    second = CTX.envelope(OtherHappened(note="b"), stream_id="s", stream_type="S", version=2)
    assert first.event_id < second.event_id


def test_a_new_event_id_is_a_uuid7_like_any_other() -> None:
    """new_event_id fills a UUID's slots directly: it must compare, hash, print and
    pickle as one parsed from its own text."""
    made = new_event_id()
    parsed = uuid.UUID(str(made))
    assert type(made) is uuid.UUID and made.version == 7
    assert made == parsed and hash(made) == hash(parsed) and made.bytes == parsed.bytes
    assert pickle.loads(pickle.dumps(made)) == made
    assert made.is_safe is uuid.SafeUUID.unknown


def test_a_new_id_as_text_is_written_as_str_of_a_uuid7() -> None:
    """new_id_text skips UUID.__str__: its text must be exactly what str() of the same
    UUID writes (an appointment id is compared and stored as text)."""
    for _ in range(1000):
        text = new_id_text()
        parsed = uuid.UUID(text)
        assert text == str(parsed) and parsed.version == 7
    assert new_id_text() < new_id_text()  # time-ordered like new_event_id


def test_a_context_refuses_events_it_does_not_define() -> None:
    foreign = msgspec.json.encode(Unrelated(x=1))
    assert not CTX.knows("Unrelated")
    with pytest.raises(msgspec.ValidationError):
        CTX.decode(foreign)


def test_a_new_optional_field_does_not_break_old_payloads() -> None:
    # Written before `size` existed: consumers must still read it.
    old = b'{"type": "ThingHappened", "thing_id": "t-9"}'
    assert CTX.decode(old) == ThingHappened(thing_id="t-9", size=1)


def test_unknown_fields_from_a_newer_producer_are_ignored() -> None:
    newer = b'{"type": "OtherHappened", "note": "n", "added_later": true}'
    assert CTX.decode(newer) == OtherHappened(note="n")


def test_topic_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a run's namespace (the suite sets one): the names production uses.
    monkeypatch.delenv(TOPIC_NAMESPACE_VARIABLE, raising=False)
    assert events_topic("booking") == "booking.events.v1"
    assert dlq_topic("booking.events.v1") == "booking.events.v1.dlq"
    topics = all_topics()
    assert "registration.events.v1" in topics and "registration.events.v1.dlq" in topics
    assert CTX.topic == "demo.events.v1"
