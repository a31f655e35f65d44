"""Settings: a per-service value wins over the shared one."""

from __future__ import annotations

import pytest

from immunreg.config import DEFAULT_POSTGRES_PORT, Settings, local_port, port_offset
from immunreg.domain import Conflict, NotFound, RuleViolation
from immunreg.eventstore.database import check_schema_name


def test_service_specific_settings_override_shared_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shared/db")
    monkeypatch.setenv("BOOKING_DATABASE_URL", "postgresql://booking-only/db")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    monkeypatch.delenv("BOOKING_PORT", raising=False)
    monkeypatch.delenv("IMMUNREG_PORT_OFFSET", raising=False)

    booking = Settings.from_env("booking")
    registration = Settings.from_env("registration")

    assert booking.database_url == "postgresql://booking-only/db"
    assert registration.database_url == "postgresql://shared/db"
    assert booking.port == 8082 and registration.port == 8081
    assert booking.db_schema == "booking"


def test_schema_names_that_would_need_quoting_are_refused() -> None:
    assert check_schema_name("registration") == "registration"
    for bad in ("Registration", "a-b", "x; drop table events", ""):
        with pytest.raises(ValueError):
            check_schema_name(bad)


def test_domain_errors_carry_their_http_status() -> None:
    assert RuleViolation("r", "m").status == 422
    assert Conflict("c", "m").status == 409
    assert NotFound("n", "m").status == 404


def test_timeouts_have_defaults_and_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shared/db")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    for name in ("DB_STATEMENT_TIMEOUT", "DB_CONNECT_TIMEOUT", "SHUTDOWN_DRAIN_DELAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHUTDOWN_TIMEOUT", "20")
    monkeypatch.setenv("BOOKING_DB_STATEMENT_TIMEOUT", "2.5")

    booking = Settings.from_env("booking")
    registration = Settings.from_env("registration")

    assert booking.database_timeouts().statement == 2.5
    assert registration.database_timeouts().statement == 5.0
    assert registration.database_timeouts().connect == 5.0
    assert booking.shutdown_timeout == registration.shutdown_timeout == 20.0
    assert registration.shutdown_drain_delay == 2.0


def test_the_port_offset_moves_every_local_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shared/db")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    monkeypatch.delenv("BOOKING_PORT", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("IMMUNREG_PG_PORT", raising=False)
    monkeypatch.setenv("IMMUNREG_PORT_OFFSET", "100")

    assert Settings.from_env("booking").port == 8182
    assert local_port("IMMUNREG_PG_PORT", DEFAULT_POSTGRES_PORT) == DEFAULT_POSTGRES_PORT + 100
    monkeypatch.setenv("IMMUNREG_PG_PORT", "61000")  # a named port wins over the offset
    assert local_port("IMMUNREG_PG_PORT", DEFAULT_POSTGRES_PORT) == 61000
    monkeypatch.setenv("IMMUNREG_PORT_OFFSET", "7000")
    with pytest.raises(RuntimeError, match="IMMUNREG_PORT_OFFSET must be between 0 and 6442"):
        port_offset()


def test_token_and_rate_limit_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shared/db")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    for name in (
        "IMMUNREG_ENV",
        "JWT_JWKS_FILE",
        "JWT_ISSUER",
        "JWT_MAX_LIFETIME",
        "RATE_LIMIT_PER_MINUTE",
        "RATE_LIMIT_BURST",
        "CERTIFICATES_RATE_LIMIT_BURST",
    ):
        monkeypatch.delenv(name, raising=False)
    development = Settings.from_env("certificates")
    assert development.environment == "development"
    assert (development.jwt_jwks_file, development.jwt_issuer) == (None, None)
    assert (development.rate_limit_per_minute, development.rate_limit_burst) == (120.0, 30)

    monkeypatch.setenv("IMMUNREG_ENV", "production")
    monkeypatch.setenv("JWT_ISSUER", "https://id.example.rs")
    monkeypatch.setenv("JWT_MAX_LIFETIME", "900")
    monkeypatch.setenv("RATE_LIMIT_BURST", "10")
    monkeypatch.setenv("CERTIFICATES_RATE_LIMIT_BURST", "3")
    certificates = Settings.from_env("certificates")
    assert certificates.environment == "production"
    assert certificates.jwt_issuer == "https://id.example.rs"
    assert certificates.jwt_max_lifetime == 900.0
    assert certificates.rate_limit_burst == 3
    assert Settings.from_env("projections").rate_limit_burst == 10


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("IMMUNREG_ENV", "prod", "IMMUNREG_ENV must be one of"),
        ("RATE_LIMIT_BURST", "lots", "RATE_LIMIT_BURST must be a number"),
        ("RATE_LIMIT_PER_MINUTE", "0", "RATE_LIMIT_PER_MINUTE must be positive"),
        ("JWT_MAX_LIFETIME", "-5", "JWT_MAX_LIFETIME must be positive"),
    ],
)
def test_a_bad_security_setting_is_a_start_up_failure_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://shared/db")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=says):
        Settings.from_env("projections")
