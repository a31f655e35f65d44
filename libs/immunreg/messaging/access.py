"""Which Kafka resources each service may use: the table the brokers' ACLs are written from.

A service writes its own context's topic (its events; for the holders, certificates and
notifications, also their `HolderKeyOffered` offers) and the dead-letter topics of the
topics it consumes (dead letters go out through its outbox). It reads the topics it
consumes, and reads back what it writes: the relay's recovery looks for its own newest
message on each topic it publishes to. Its consumer group and its relay's transactional
id are named after its database schema, which is the service's name; projections' read
models are schemas `projections_m...`, so its group and transactional id are prefixes.

Nobody writes another service's event topic: an offer or a grant on a topic is believed
to come from the service that owns it (docs/security.md, "Erasure"). deploy/k8s's
KafkaUsers and tests/integration/messaging/test_kafka_acls.py apply this table;
tests/unit/deploy checks the KafkaUsers against it and tests/unit/foundation checks
CONSUMES against the services' reactions.
"""

from __future__ import annotations

from dataclasses import dataclass

from immunreg.contracts.topics import CONTEXT_NAMES, dlq_topic, events_topic

# The context whose topic each service publishes on (projections publishes no events).
PUBLISHES: dict[str, str | None] = {
    "registration": "registration",
    "booking": "booking",
    "inventory": "inventory",
    "administration": "administration",
    "certificates": "certificates",
    "projections": None,
    "notifications": "notifications",
    "supply": "supply",
}
# The contexts whose topics each service consumes (its Reactions).
CONSUMES: dict[str, tuple[str, ...]] = {
    "registration": ("administration", "booking", "certificates", "notifications"),
    "booking": ("administration", "inventory", "registration"),
    "inventory": ("administration", "supply"),
    "administration": ("booking", "inventory", "registration"),
    "certificates": ("administration", "inventory", "registration"),
    # Its read models are built from every context but notifications' key offers.
    "projections": tuple(c for c in CONTEXT_NAMES if c != "notifications"),
    "notifications": ("administration", "booking", "certificates", "inventory", "registration"),
    "supply": ("administration", "booking", "inventory", "registration"),
}
# Services whose consumer groups and relays run under several schemas sharing a prefix.
MODEL_SCHEMA_SUFFIX = {"projections": "_m"}

RELAY_ID_PREFIX = "immunreg-relay-"


def relay_id(schema: str) -> str:
    """The transactional id of the outbox relay of `schema` (one relay leads per schema)."""
    return f"{RELAY_ID_PREFIX}{schema}"


@dataclass(frozen=True)
class KafkaAccess:
    """What one service's Kafka principal may do."""

    service: str
    writes: tuple[str, ...]
    """Topics it produces to (Write, Describe)."""
    reads: tuple[str, ...]
    """Topics it consumes or reads back (Read, Describe)."""
    group: str
    """Its consumer group (Read), or the groups' prefix when `prefixed`."""
    transactional_id: str
    """Its relay's transactional id (Write, Describe), or their prefix when `prefixed`."""
    prefixed: bool = False


def kafka_access() -> dict[str, KafkaAccess]:
    """Per service, the topics it writes and reads, its group and its transactional id."""
    table = {}
    for service, own in PUBLISHES.items():
        consumed = [events_topic(c) for c in CONSUMES[service]]
        writes = ([events_topic(own)] if own else []) + [dlq_topic(t) for t in consumed]
        schema = service + MODEL_SCHEMA_SUFFIX.get(service, "")
        table[service] = KafkaAccess(
            service=service,
            writes=tuple(writes),
            reads=tuple(dict.fromkeys([*consumed, *writes])),
            group=schema,
            transactional_id=relay_id(schema),
            prefixed=service in MODEL_SCHEMA_SUFFIX,
        )
    return table


@dataclass(frozen=True)
class Acl:
    """One allow rule, in the terms of Strimzi's KafkaUser and Kafka's CreateAcls."""

    resource: str  # topic, group or transactionalId
    name: str
    prefixed: bool
    operations: tuple[str, ...]


def acls(access: KafkaAccess) -> list[Acl]:
    """The allow rules of a service's principal. No IdempotentWrite on the cluster: since
    Kafka 3.0 Write on a topic is enough for an idempotent producer (KIP-679)."""
    rules = []
    for topic in dict.fromkeys([*access.writes, *access.reads]):
        operations = {"Describe"}
        operations |= {"Write"} if topic in access.writes else set()
        operations |= {"Read"} if topic in access.reads else set()
        rules.append(Acl("topic", topic, False, tuple(sorted(operations))))
    rules.append(Acl("group", access.group, access.prefixed, ("Describe", "Read")))
    rules.append(
        Acl("transactionalId", access.transactional_id, access.prefixed, ("Describe", "Write"))
    )
    return rules
