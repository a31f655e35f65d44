"""Topic names: one event topic per bounded context, `<context>.events.v1`."""

from __future__ import annotations

CONTEXT_NAMES: tuple[str, ...] = (
    "registration",
    "booking",
    "inventory",
    "administration",
    "certificates",
)


def events_topic(context: str) -> str:
    """The topic a context publishes its events on (key = stream id)."""
    return f"{context}.events.v1"


def dlq_topic(topic: str) -> str:
    """Where consumers put messages of `topic` that they cannot handle."""
    return f"{topic}.dlq"


def all_topics(extra: tuple[str, ...] = ()) -> list[str]:
    """Every event topic and its dead-letter topic, for `immunreg infra up`."""
    names = [events_topic(c) for c in (*CONTEXT_NAMES, *extra)]
    return [*names, *(dlq_topic(n) for n in names)]
