"""The envelope every event travels in, and the base class of every event.

Wire format: a JSON object with the envelope fields and the event itself under
`data`. The event's own JSON carries its type as the tag `type`, so a context's
events decode through one tagged union. The envelope's `schema_version` is the
version the event was written at; `Context.decode` upcasts older data (see
upcasting.py for the evolution rule).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import uuid_utils

from immunreg.contracts.topics import events_topic
from immunreg.contracts.upcasting import Upcasters
from immunreg.structs import Struct


def new_event_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so ids sort roughly by creation.

    A stdlib `uuid.UUID` filled in directly from `uuid_utils.uuid7()`'s integer: about
    0.6 us an id against 2.4 for `uuid_utils.compat.uuid7()` and 3.3 for
    `UUID(bytes=...)`, whose checks are Python (bench: timeit, min of 5); a
    scheduling run makes one per event and per appointment. Built without `__init__`
    the way `uuid.UUID` itself stores one (its two slots), so it compares, hashes and
    pickles as any other; no database client is imported (pure domains use this)."""
    made = _new(uuid.UUID)
    _set(made, "int", _uuid7().int)
    _set(made, "is_safe", _UNKNOWN)
    return made


def new_id_text() -> str:
    """`str(new_event_id())`, the id as text (lowercase, hyphenated), made without the
    stdlib's `UUID.__str__`: 0.5 us an id against 3.6 (a scheduling run names every
    appointment with one)."""
    return str(_uuid7())


_new = object.__new__
_set = object.__setattr__
_uuid7 = uuid_utils.uuid7
# Read once: an enum member through its class costs 0.4 us a lookup on Python 3.11.
_UNKNOWN = uuid.SafeUUID.unknown


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Event(Struct, tag_field="type", tag=True):
    """Base of every domain event: immutable, past tense, tagged by class name.

    Evolution rules: a new field gets a default; an existing field never
    changes type; a rename adds the new field and keeps the old one filled.
    Bump `schema_version` when older data needs an upcaster to read as this
    one, and register that upcaster with the context (see upcasting.py).
    """

    schema_version: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        """The tag this event travels under."""
        return cls.__name__


class Metadata(Struct):
    """Who asked for a change and why: copied into every event it produces."""

    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    occurred_at: datetime | None = None

    @classmethod
    def caused_by(cls, envelope: Envelope, *, occurred_at: datetime | None = None) -> Metadata:
        """For events a reaction appends: same correlation, caused by the event it handles."""
        return cls(
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            occurred_at=occurred_at,
        )


class Envelope(Struct):
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
    """A bounded context's published events: its topic, one tagged-union decoder
    and the upcasters that bring older versions of its events up to date."""

    def __init__(
        self, name: str, events: Iterable[type[Event]], upcasters: Upcasters | None = None
    ) -> None:
        self.name = name
        self.event_types: dict[str, type[Event]] = {e.type_name(): e for e in events}
        self.upcasters = upcasters if upcasters is not None else Upcasters()
        self.versions = {tag: e.schema_version for tag, e in self.event_types.items()}
        self.upcasters.check(self.versions)
        self._newest = max(self.versions.values(), default=1)
        union: Any = tuple(self.event_types.values())
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            union[0] if len(union) == 1 else _union(union)
        )
        self._encoder = msgspec.json.Encoder()

    @property
    def topic(self) -> str:
        """Where this context's events are published (in this process's topic namespace)."""
        return events_topic(self.name)

    def renamed(self, name: str) -> Context:
        """The same events and upcasters on `<name>.events.v1` (private topics in tests)."""
        return Context(name, self.event_types.values(), self.upcasters)

    def encode(self, event: Event) -> bytes:
        """The event's JSON (with its `type` tag), at its current schema version."""
        return self._encoder.encode(event)

    def decode(
        self,
        data: bytes | msgspec.Raw,
        *,
        schema_version: int | None = None,
        type_name: str | None = None,
    ) -> Event:
        """Decode one of this context's events: the one decode path for recorded events.

        `schema_version` is the version the data was written at (the envelope's;
        None: written by this code). Older data is upcast first; newer data is
        read as it is, which the producer's compatibility rule makes safe.
        Raises msgspec.ValidationError for data that is not one of these events,
        UpcastError when an upcaster is missing.
        """
        raw = bytes(data)
        if schema_version is None or not self._may_be_old(schema_version, type_name):
            return self._decoder.decode(raw)  # type: ignore[no-any-return]
        return self._upcast(raw, schema_version)

    def _may_be_old(self, schema_version: int, type_name: str | None) -> bool:
        # Cheap enough for millions of replayed events: no JSON is parsed here.
        if type_name is not None and type_name in self.versions:
            return schema_version < self.versions[type_name]
        return schema_version < self._newest

    def read(self, envelope: Envelope) -> Event:
        """The event an envelope carries, upcast to the version this code knows."""
        return self.decode(
            envelope.data, schema_version=envelope.schema_version, type_name=envelope.type
        )

    def _upcast(self, raw: bytes, schema_version: int) -> Event:
        # The slow path only for data older than its type's current version:
        # upcasters work on the JSON object, then msgspec validates the result.
        fields = msgspec.json.decode(raw)
        type_name = fields.get("type") if isinstance(fields, dict) else None
        current = self.versions.get(type_name) if isinstance(type_name, str) else None
        if current is None or schema_version >= current:
            return self._decoder.decode(raw)  # type: ignore[no-any-return]
        assert isinstance(type_name, str)
        upgraded = self.upcasters.upcast(type_name, fields, schema_version, current)
        return self._decoder.decode(self._encoder.encode(upgraded))  # type: ignore[no-any-return]

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
