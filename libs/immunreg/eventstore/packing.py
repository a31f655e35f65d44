"""Packed outbox rows: many messages of one bulk write in one row.

A scheduling run starts hundreds of thousands of streams; one outbox row per event
cost PostgreSQL a heap tuple and two index entries each, the writer a COPY row and the
relay a row to read and delete, for bytes the events table holds already. A packed
row (`packed` = the number of messages) holds a bulk write's messages as one msgpack
array of [key, payload] pairs, in order; the relay publishes them as if they were that
many rows at the row's position, all in the Kafka transaction that publishes the row.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

# Messages in one packed row at most: a row is published whole in one Kafka transaction,
# so this bounds a relay batch (its batch size, plus one row's messages).
PACK_MAX = 1000

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[tuple[str, bytes]])


def pack(keys: Sequence[str], payloads: Sequence[bytes]) -> bytes:
    """The packed payload of these messages (key i with payload i), in order."""
    return _encoder.encode(list(zip(keys, payloads, strict=True)))


def unpack(packed: bytes) -> list[tuple[str, bytes]]:
    """The (key, payload) messages of a packed payload, in order."""
    return _decoder.decode(packed)
