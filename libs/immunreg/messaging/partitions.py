"""Which partition a key goes to: the Java client's murmur2 rule, computed here.

The relay names the partition itself, so that after a crash it can tell, per
partition, which outbox rows already reached Kafka.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from aiokafka.partitioner import murmur2

_SEED = 0x9747B28C
_M = np.uint32(0x5BD1E995)


# murmur2 is pure Python (about 10 us a key), and a stream's events follow each other
# in the outbox (a SiteDay's appends, a citizen's changes): one hash serves them all.
@lru_cache(maxsize=4096)
def partition_for(key: bytes, partition_count: int) -> int:
    """The partition Kafka's default partitioner would choose for key."""
    return int((murmur2(key) & 0x7FFFFFFF) % partition_count)


def partitions_for(keys: Sequence[bytes], partition_count: int) -> list[int]:
    """partition_for of every key, computed for all of them at once.

    The relay's batch of a scheduling run is a thousand keys seen once each: aiokafka's
    murmur2, a Python loop over every byte, was 13% of the booking process's samples.
    Here each step of murmur2 runs over all keys of one length together (numpy's uint32
    arithmetic wraps as Java's int does): 0.5 against 15 us a key for a thousand, and
    the relay's CPU per event about halved (docs/BENCHMARKS.md, "Relay CPU per event").
    The same numbers as partition_for, bit for bit (tests/unit/foundation/test_partitions.py).
    """
    hashes = np.empty(len(keys), dtype=np.uint32)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    for length, where in by_length.items():
        hashes[where] = _murmur2_same_length([keys[i] for i in where], length)
    result: list[int] = ((hashes & 0x7FFFFFFF) % partition_count).tolist()
    return result


def _murmur2_same_length(keys: list[bytes], length: int) -> np.ndarray:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) of keys all `length`
    bytes long, as unsigned 32-bit integers."""
    data = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), length)
    h = np.full(len(keys), _SEED ^ length, dtype=np.uint32)
    whole = length // 4
    if whole:
        # Little-endian 32-bit words, as Java assembles them from the bytes.
        words = np.ascontiguousarray(data[:, : whole * 4]).view("<u4")
        for i in range(whole):
            k = words[:, i] * _M
            k ^= k >> 24
            k *= _M
            h *= _M
            h ^= k
    tail = whole * 4
    extra = length % 4
    if extra >= 3:
        h ^= data[:, tail + 2].astype(np.uint32) << 16
    if extra >= 2:
        h ^= data[:, tail + 1].astype(np.uint32) << 8
    if extra >= 1:
        h ^= data[:, tail].astype(np.uint32)
        h *= _M
    h ^= h >> 13
    h *= _M
    h ^= h >> 15
    return h
