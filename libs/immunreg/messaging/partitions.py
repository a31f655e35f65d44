"""Which partition a key goes to: the Java client's murmur2 rule, computed here.

The relay names the partition itself, so that after a crash it can tell, per
partition, which outbox rows already reached Kafka.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


# murmur2 is pure Python (about 10 us a key), and a stream's events follow each other
# in the outbox (an appointment's booking and its notification): one hash serves both.
@lru_cache(maxsize=4096)
def partition_for(key: bytes, partition_count: int) -> int:
    """The partition Kafka's default partitioner would choose for key."""
    return int((murmur2(key) & 0x7FFFFFFF) % partition_count)
