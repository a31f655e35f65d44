"""Kafka enforces who may write which topic: docs/security.md's "someone who can write to
a holder's topic" row.

A broker of the test's own (the jars the worktree already fetched, free ports, a small
heap) with one SASL_PLAINTEXT listener (PLAIN), the StandardAuthorizer, a super user,
and the ACLs `immunreg.messaging.access` says each service has. The clients are made
exactly as the services make them (`client_options()` from the KAFKA_* settings): the
certificates service's principal can publish through its relay's transactional producer
on its own (holder-key) topic, and is refused on registration's topic and on
notifications' holder-key topic; without credentials, or with a wrong password, no
client connects at all.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from aiokafka.protocol.admin import CreateAclsRequest

from immunreg.contracts.topics import all_topics, events_topic
from immunreg.localinfra.kafka import LocalKafka
from immunreg.localinfra.stack import share_jars
from immunreg.messaging.access import Acl, acls, kafka_access, relay_id
from immunreg.messaging.connection import client_options
from immunreg.messaging.topics import ensure_topics, wait_for_kafka
from immunreg.messaging.transactions import kafka_transaction

from ..support.ports import free_port

ADMIN = "admin"
# Kafka's wire codes (org.apache.kafka.common.acl / resource).
RESOURCE_TYPES = {"topic": 2, "group": 3, "transactionalId": 5}
LITERAL, PREFIXED = 3, 4
OPERATIONS = {"Read": 3, "Write": 4, "Describe": 8}
ALLOW = 3


def plain_users(passwords: dict[str, str]) -> str:
    users = " ".join(f'user_{name}="{password}"' for name, password in passwords.items())
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{passwords[ADMIN]}" {users};'
    )


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return {name: secrets.token_hex(8) for name in [ADMIN, *kafka_access()]}


@pytest.fixture(scope="module")
def secured_kafka(
    tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]
) -> Iterator[LocalKafka]:
    root = tmp_path_factory.mktemp("kafka-acl")
    share_jars(root / "libs")
    jaas = plain_users(passwords)
    kafka = LocalKafka(
        root,
        port=free_port(),
        controller_port=free_port(),
        heap="256m",
        protocol="SASL_PLAINTEXT",
        extra_properties="\n".join(
            [
                "sasl.enabled.mechanisms=PLAIN",
                "sasl.mechanism.inter.broker.protocol=PLAIN",
                "sasl.mechanism.controller.protocol=PLAIN",
                f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
                f"listener.name.controller.plain.sasl.jaas.config={jaas}",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users=User:{ADMIN}",
                "allow.everyone.if.no.acl.found=false",
            ]
        ),
    )
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def authenticate_as(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, user: str, password: str
) -> None:
    """The settings a service's Deployment gets (here with PLAIN, as the test broker has)."""
    path = tmp_path / f"{user}-password"
    path.write_text(password + "\n")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", user)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(path))


async def create_acls(bootstrap: str, principal: str, rules: list[Acl]) -> None:
    """CreateAcls through the admin connection (aiokafka's admin client has no method)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options())
    try:
        await admin.start()
        node = admin._client.get_random_node()
        requests = [
            CreateAclsRequest(
                RESOURCE_TYPES[rule.resource],
                rule.name,
                PREFIXED if rule.prefixed else LITERAL,
                f"User:{principal}",
                "*",
                OPERATIONS[operation],
                ALLOW,
            )
            for rule in rules
            for operation in rule.operations
        ]
        # One rule a request (aiokafka's request builds one); sent together, not in turn.
        responses = await asyncio.gather(*(admin._client.send(node, r) for r in requests))
        for request, response in zip(requests, responses, strict=True):
            for error_code, message in response.creation_responses:
                assert error_code == 0, (vars(request), message)
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def with_acls(
    secured_kafka: LocalKafka, passwords: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The broker with every topic and every service's ACLs, made by the super user."""
    bootstrap = secured_kafka.bootstrap

    async def prepare() -> None:
        await wait_for_kafka(bootstrap, seconds=60)
        await ensure_topics(bootstrap, all_topics(), partitions=1)
        await asyncio.gather(
            *(create_acls(bootstrap, name, acls(access)) for name, access in kafka_access().items())
        )

    with pytest.MonkeyPatch.context() as monkeypatch:
        authenticate_as(monkeypatch, tmp_path_factory.mktemp("admin"), ADMIN, passwords[ADMIN])
        asyncio.run(prepare())
    return bootstrap


async def producer_as(bootstrap: str, **options: object) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, **client_options(), request_timeout_ms=10000, **options
    )
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def test_a_holder_writes_its_own_topic_and_no_other(
    with_acls: str,
    passwords: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    authenticate_as(monkeypatch, tmp_path, "certificates", passwords["certificates"])
    # The relay's producer: transactional, under the relay's transactional id.
    relay = await producer_as(
        with_acls, transactional_id=relay_id("certificates"), enable_idempotence=True, acks="all"
    )
    try:
        async with kafka_transaction(relay) as deliveries:
            deliveries.append(await relay.send(events_topic("certificates"), b"offer", key=b"k"))
    finally:
        await relay.stop()

    producer = await producer_as(with_acls)
    try:
        # Registration's topic: certificates reads it (Describe, Read), may not write it.
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(events_topic("registration"), b"grant", key=b"k")
        # Notifications' holder-key topic: nothing at all for certificates.
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(events_topic("notifications"), b"offer", key=b"k")
    finally:
        await producer.stop()


async def test_another_transactional_id_is_refused(
    with_acls: str, passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    authenticate_as(monkeypatch, tmp_path, "certificates", passwords["certificates"])
    # Fencing registration's relay would stop its grants: not certificates' to do.
    with pytest.raises(KafkaError):
        producer = await producer_as(
            with_acls, transactional_id=relay_id("registration"), enable_idempotence=True
        )
        await producer.stop()


async def test_without_credentials_nothing_connects(
    with_acls: str, passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(KafkaError):
        await producer_as(with_acls)
    authenticate_as(monkeypatch, tmp_path, "certificates", passwords["registration"])
    with pytest.raises(KafkaError):
        await producer_as(with_acls)
