"""The relay must pick the same partition as Kafka's Java default partitioner."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from immunreg.eventstore.relay import decode_position, encode_position
from immunreg.messaging.partitions import partition_for, partitions_for


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


# Keys of every length (0 to past a few words, so each of the four tails), raw bytes and
# non-ASCII text as UTF-8, several lengths in one call (the relay's batches mix them).
keys = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=40).map(str.encode),
    st.uuids().map(lambda u: f"appointment-{u}".encode()),
)


@settings(max_examples=300)
@given(st.lists(keys, max_size=60), st.sampled_from([1, 2, 3, 6, 12, 100, 2**31 - 1]))
def test_partitions_for_a_batch_are_partition_for_of_each_key(
    batch: list[bytes], count: int
) -> None:
    assert partitions_for(batch, count) == [partition_for(key, count) for key in batch]


def test_partitions_for_keeps_the_java_client_hashes() -> None:
    # The largest count keeps the whole positive hash: the Java values above, masked.
    java = {b"21": -973932308, b"foobar": -790332482, b"abc": 479470107}
    hashes = partitions_for(list(java), 2**31 - 1)
    assert hashes == [(h & 0x7FFFFFFF) % (2**31 - 1) for h in java.values()]


def test_positions_round_trip_and_order_by_transaction_first() -> None:
    assert decode_position(encode_position((812, 4))) == (812, 4)
    # A row of an older transaction sorts first even with a larger row id.
    assert (811, 90) < (812, 4)
