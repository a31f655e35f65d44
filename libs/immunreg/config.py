"""Service settings, read from the environment once at start-up.

Every setting has a per-service override (`REGISTRATION_DATABASE_URL`) before the
shared one (`DATABASE_URL`), so production can put each service on its own
database or cluster while a laptop runs them all on one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from immunreg.paths import keys_dir, local_env_file

DEFAULT_PORTS: dict[str, int] = {
    "registration": 8081,
    "booking": 8082,
    "inventory": 8083,
    "administration": 8084,
    "certificates": 8085,
    "projections": 8086,
}
# Where the local servers listen unless moved (see `port_offset`).
DEFAULT_POSTGRES_PORT = 55432
DEFAULT_KAFKA_PORT = 59092
DEFAULT_E2E_PORT_BASE = 18080


def port_offset() -> int:
    """`IMMUNREG_PORT_OFFSET` moves every local port at once (PostgreSQL, Kafka, services,
    the e2e stack), so a second checkout on the same machine runs beside the first."""
    raw = os.environ.get("IMMUNREG_PORT_OFFSET", "0") or "0"
    try:
        offset = int(raw)
    except ValueError:
        raise RuntimeError(f"IMMUNREG_PORT_OFFSET must be a whole number, not {raw!r}") from None
    if not 0 <= offset <= 5000:
        raise RuntimeError(f"IMMUNREG_PORT_OFFSET must be between 0 and 5000, not {offset}")
    return offset


def local_port(variable: str, default: int) -> int:
    """A local server's port: the variable if set, else its default moved by the offset."""
    raw = os.environ.get(variable)
    return int(raw) if raw else default + port_offset()


def service_port(service: str) -> int:
    """The port a service listens on: `<SERVICE>_PORT`, `PORT`, else its default + offset."""
    configured = setting("PORT", service)
    return int(configured) if configured else DEFAULT_PORTS.get(service, 8080) + port_offset()


def read_local_env() -> dict[str, str]:
    """Endpoints written by `immunreg infra up`, used when the environment names none."""
    path = local_env_file()
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def setting(name: str, service: str | None = None, default: str | None = None) -> str | None:
    """Look a setting up: `<SERVICE>_<NAME>`, then `<NAME>`, then local.env, then default."""
    if service:
        specific = os.environ.get(f"{service.upper()}_{name}")
        if specific:
            return specific
    value = os.environ.get(name)
    if value:
        return value
    return read_local_env().get(name, default)


@dataclass(frozen=True)
class Settings:
    """What one service process needs to know about its surroundings."""

    service: str
    database_url: str
    db_schema: str
    kafka_bootstrap: str
    host: str = "127.0.0.1"
    port: int = 8080
    jwt_public_key: str = ""
    kafka_partitions: int = 3
    relay_poll_interval: float = 0.5
    # One Kafka transaction per batch: larger batches amortise the transaction
    # round trips (see bench/results.json, relay batch 500 vs 2000).
    relay_batch_size: int = 1000
    consumer_max_attempts: int = 3
    consumer_backoff: float = 0.2
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, service: str, **overrides: object) -> Settings:
        """Build settings for `service` from the environment (and local.env)."""
        database_url = setting("DATABASE_URL", service)
        kafka = setting("KAFKA_BOOTSTRAP_SERVERS", service)
        if not database_url:
            raise RuntimeError("DATABASE_URL is not set and `immunreg infra up` has not run")
        if not kafka:
            raise RuntimeError(
                "KAFKA_BOOTSTRAP_SERVERS is not set and `immunreg infra up` has not run"
            )
        jwt_key = setting("JWT_PUBLIC_KEY_FILE", service) or str(keys_dir() / "jwt-public.pem")
        values: dict[str, object] = {
            "service": service,
            "database_url": database_url,
            "db_schema": setting("DB_SCHEMA", service, service) or service,
            "kafka_bootstrap": kafka,
            "host": setting("HOST", service, "127.0.0.1") or "127.0.0.1",
            "port": service_port(service),
            "jwt_public_key": jwt_key,
            "kafka_partitions": int(setting("KAFKA_PARTITIONS", service, "3") or 3),
            "relay_poll_interval": float(setting("RELAY_POLL_INTERVAL", service, "0.5") or 0.5),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
