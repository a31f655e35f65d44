"""Topic names: one event topic per bounded context, `<context>.events.v1`.

`IMMUNREG_TOPIC_NAMESPACE` prefixes every name, so that runs sharing one broker
(the test suite beside `make run`, two load tests) never read each other's events.
Production leaves it empty.
"""

from __future__ import annotations

import os
import re

TOPIC_NAMESPACE_VARIABLE = "IMMUNREG_TOPIC_NAMESPACE"
_NAMESPACE = re.compile(r"^[A-Za-z0-9._-]{0,100}$")

CONTEXT_NAMES: tuple[str, ...] = (
    "registration",
    "booking",
    "inventory",
    "administration",
    "certificates",
    "supply",
    "notifications",
)


def topic_namespace() -> str:
    """The prefix of every topic name in this process ('' unless a run isolates itself)."""
    namespace = os.environ.get(TOPIC_NAMESPACE_VARIABLE, "")
    if not _NAMESPACE.match(namespace):
        raise RuntimeError(f"{TOPIC_NAMESPACE_VARIABLE} may hold only letters, digits, '.-_'")
    return namespace


def events_topic(context: str, namespace: str | None = None) -> str:
    """The topic a context publishes its events on (key = stream id), in `namespace`
    (default: this process's)."""
    return f"{topic_namespace() if namespace is None else namespace}{context}.events.v1"


def dlq_topic(topic: str) -> str:
    """Where consumers put messages of `topic` that they cannot handle."""
    return f"{topic}.dlq"


def all_topics(extra: tuple[str, ...] = ()) -> list[str]:
    """Every event topic and its dead-letter topic, for `immunreg infra up`."""
    names = [events_topic(c) for c in (*CONTEXT_NAMES, *extra)]
    return [*names, *(dlq_topic(n) for n in names)]
