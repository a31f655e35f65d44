"""Errors the event store raises."""

from __future__ import annotations


class ConcurrencyConflict(Exception):
    """Another writer appended to the stream first: load again and re-decide."""

    def __init__(self, stream_id: str, expected_version: int) -> None:
        super().__init__(f"stream {stream_id!r} is no longer at version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


class StreamNotFound(Exception):
    """The stream has no events."""
