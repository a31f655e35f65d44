"""The envelope every event travels in, and the base class of every event.

Wire format: a JSON object with the envelope fields and the event itself under
`data`. The event's own JSON carries its type as the tag `type`, so a context's
events decode through one tagged union.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import uuid_utils.compat as uuid_compat

from immunreg.contracts.topics import events_topic


def new_event_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so ids sort roughly by creation."""
    return uuid_compat.uuid7()


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    """Base of every domain event: immutable, past tense, tagged by class name.

    Evolution rules: a new field gets a default; an existing field never
    changes type; bump `schema_version` when the meaning changes.
    """

    schema_version: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        """The tag this event travels under."""
        return cls.__name__


class Metadata(msgspec.Struct, frozen=True, kw_only=True):
    """Who asked for a change and why: copied into every event it produces."""

    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    occurred_at: datetime | None = None


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded event, as stored and as published."""

    event_id: uuid.UUID
    stream_id: str
    stream_type: str
    version: int
    type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    data: msgspec.Raw = msgspec.Raw(b"{}")


_envelope_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope)


def encode_envelope(envelope: Envelope) -> bytes:
    """The bytes published to Kafka."""
    return _envelope_encoder.encode(envelope)


def decode_envelope(payload: bytes) -> Envelope:
    """Parse the envelope; the event itself stays raw until a consumer wants it."""
    return _envelope_decoder.decode(payload)


class Context:
    """A bounded context's published events: its topic and one tagged-union decoder."""

    def __init__(self, name: str, events: Iterable[type[Event]]) -> None:
        self.name = name
        self.event_types: dict[str, type[Event]] = {e.type_name(): e for e in events}
        union: Any = tuple(self.event_types.values())
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            union[0] if len(union) == 1 else _union(union)
        )
        self._encoder = msgspec.json.Encoder()

    @property
    def topic(self) -> str:
        """Where this context's events are published (in this process's topic namespace)."""
        return events_topic(self.name)

    def encode(self, event: Event) -> bytes:
        """The event's JSON (with its `type` tag)."""
        return self._encoder.encode(event)

    def decode(self, data: bytes | msgspec.Raw) -> Event:
        """Decode one of this context's events; raises msgspec.ValidationError otherwise."""
        return self._decoder.decode(bytes(data))  # type: ignore[no-any-return]

    def knows(self, type_name: str) -> bool:
        """Whether this context defines an event of that type."""
        return type_name in self.event_types

    def envelope(
        self,
        event: Event,
        *,
        stream_id: str,
        stream_type: str,
        version: int,
        metadata: Metadata | None = None,
        recorded_at: datetime | None = None,
    ) -> Envelope:
        """Wrap an event decided for a stream, ready to append."""
        meta = metadata or Metadata()
        now = recorded_at or utcnow()
        return Envelope(
            event_id=new_event_id(),
            stream_id=stream_id,
            stream_type=stream_type,
            version=version,
            type=event.type_name(),
            schema_version=event.schema_version,
            occurred_at=meta.occurred_at or now,
            recorded_at=now,
            correlation_id=meta.correlation_id,
            causation_id=meta.causation_id,
            data=msgspec.Raw(self.encode(event)),
        )


def _union(types: tuple[type[Event], ...]) -> Any:
    from typing import Union

    return Union[types]  # noqa: UP007  (a runtime-built union needs the subscript form)
