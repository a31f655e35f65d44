"""The published language: event envelopes and every context's event schemas.

Services depend on these types and on nothing else of each other's.
"""

from immunreg.contracts.envelope import (
    Context,
    Envelope,
    Event,
    Metadata,
    decode_envelope,
    encode_envelope,
    new_event_id,
)
from immunreg.contracts.topics import CONTEXT_NAMES, all_topics, dlq_topic, events_topic
from immunreg.contracts.upcasting import UpcastError, Upcasters

__all__ = [
    "CONTEXT_NAMES",
    "Context",
    "Envelope",
    "Event",
    "Metadata",
    "UpcastError",
    "Upcasters",
    "all_topics",
    "decode_envelope",
    "dlq_topic",
    "encode_envelope",
    "events_topic",
    "new_event_id",
]
