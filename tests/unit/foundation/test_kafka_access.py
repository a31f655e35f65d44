"""The Kafka access table matches what the services do, and the connection settings
are read, checked and refused in production as docs/security.md says."""

from __future__ import annotations

from pathlib import Path

import pytest

from immunreg.config import PRODUCTION, Settings
from immunreg.contracts.topics import CONTEXT_NAMES, dlq_topic, events_topic
from immunreg.discovery import available_services, load_service
from immunreg.http.auth import production_problems
from immunreg.messaging.access import kafka_access, relay_id
from immunreg.messaging.connection import KafkaSecurity, client_options

# --- the access table -------------------------------------------------------------------


def test_the_table_names_every_service_and_what_each_consumes_and_publishes() -> None:
    table = kafka_access()
    assert set(table) == set(available_services())
    for name, access in table.items():
        service = load_service(name)
        if name == "projections":
            from services.projections.handlers import Sources

            consumed = set(Sources.published().topics())
        else:
            assert service.reactions is not None, name
            consumed = set(service.reactions.topics)
        assert set(access.reads) == consumed | set(access.writes), name
        own = [service.publishes.topic] if service.publishes else []
        assert set(access.writes) == {*own, *map(dlq_topic, consumed)}, name
        # Every topic the service makes sure of at start is one it may at least see.
        assert set(service.topics) <= set(access.reads), name


def test_no_service_writes_an_event_topic_but_its_own() -> None:
    owners: dict[str, set[str]] = {}
    for name, access in kafka_access().items():
        for topic in access.writes:
            owners.setdefault(topic, set()).add(name)
    for context in CONTEXT_NAMES:
        assert owners[events_topic(context)] == {context}
    # The holders' offers (HolderKeyOffered) go on their own topics, nobody else's.
    assert owners[events_topic("certificates")] == {"certificates"}
    assert owners[events_topic("notifications")] == {"notifications"}


def test_groups_and_transactional_ids_are_the_ones_the_code_uses() -> None:
    table = kafka_access()
    for name in available_services():
        # create_app's consumer group and relay are named after the schema (the service).
        access = table[name]
        if name == "projections":
            assert access.prefixed and access.group == "projections_m"
            assert relay_id("projections_m20260101000000ab12").startswith(access.transactional_id)
        else:
            assert not access.prefixed and access.group == name
            assert access.transactional_id == relay_id(name) == f"immunreg-relay-{name}"


# --- connection settings ----------------------------------------------------------------


@pytest.fixture
def no_kafka_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in (
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD_FILE",
        "KAFKA_SSL_CAFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMMUNREG_STATE_DIR", str(tmp_path / "state"))  # no local.env
    return monkeypatch


def test_the_default_is_plaintext_without_authentication(
    no_kafka_settings: pytest.MonkeyPatch,
) -> None:
    assert client_options() == {"security_protocol": "PLAINTEXT"}


def test_sasl_reads_the_password_from_its_file_each_time(
    no_kafka_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    password = tmp_path / "password"
    password.write_text("first\n")
    no_kafka_settings.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")
    no_kafka_settings.setenv("KAFKA_SASL_USERNAME", "certificates")
    no_kafka_settings.setenv("KAFKA_SASL_PASSWORD_FILE", str(password))
    assert client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "certificates",
        "sasl_plain_password": "first",
    }
    password.write_text("rotated")
    assert client_options()["sasl_plain_password"] == "rotated"
    no_kafka_settings.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert "ssl_context" in client_options()


def test_bad_settings_fail_the_start(no_kafka_settings: pytest.MonkeyPatch) -> None:
    no_kafka_settings.setenv("KAFKA_SECURITY_PROTOCOL", "SASL")
    with pytest.raises(RuntimeError, match="KAFKA_SECURITY_PROTOCOL must be one of"):
        client_options()
    no_kafka_settings.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    no_kafka_settings.setenv("KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(RuntimeError, match="KAFKA_SASL_MECHANISM must be one of"):
        client_options()


def test_production_refuses_kafka_without_authentication(
    no_kafka_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(
        service="certificates",
        database_url="postgresql://unused",
        db_schema="certificates",
        kafka_bootstrap="unused:9092",
        environment=PRODUCTION,
    )
    problems = production_problems(settings)
    assert any("KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in p for p in problems), problems
    no_kafka_settings.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    assert KafkaSecurity.from_env().problems() != []
    no_kafka_settings.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert KafkaSecurity.from_env().problems() == [
        "KAFKA_SASL_USERNAME is not set",
        "KAFKA_SASL_PASSWORD_FILE is not set",
    ]
    no_kafka_settings.setenv("KAFKA_SASL_USERNAME", "certificates")
    no_kafka_settings.setenv("KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "missing"))
    [missing] = KafkaSecurity.from_env().problems()
    assert "cannot be read" in missing
    (tmp_path / "missing").write_text("secret")
    assert KafkaSecurity.from_env().problems() == []
    assert not any("KAFKA" in p for p in production_problems(settings))
