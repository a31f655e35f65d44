"""The relay must pick the same partition as Kafka's Java default partitioner."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2

from immunreg.eventstore.relay import decode_position, encode_position
from immunreg.messaging.partitions import partition_for


# Expected values from Apache Kafka's own UtilsTest.testMurmur2 (Java client).
@pytest.mark.parametrize(
    ("key", "java_hash"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(key: bytes, java_hash: int) -> None:
    signed = murmur2(key)
    signed = signed - (1 << 32) if signed >= 1 << 31 else signed
    assert signed == java_hash


def test_partition_is_the_positive_hash_modulo_the_count() -> None:
    for key in (b"21", b"foobar", b"citizen-123"):
        expected = (murmur2(key) & 0x7FFFFFFF) % 6
        assert partition_for(key, 6) == expected
    assert {partition_for(f"k{i}".encode(), 3) for i in range(100)} == {0, 1, 2}


def test_positions_round_trip_and_order_by_transaction_first() -> None:
    assert decode_position(encode_position((812, 4))) == (812, 4)
    # A row of an older transaction sorts first even with a larger row id.
    assert (811, 90) < (812, 4)
