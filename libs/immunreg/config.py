"""Service settings, read from the environment once at start-up.

Every setting has a per-service override (`REGISTRATION_DATABASE_URL`) before the
shared one (`DATABASE_URL`), so production can put each service on its own
database or cluster while a laptop runs them all on one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from immunreg.paths import local_env_file

PRODUCTION = "production"
DEVELOPMENT = "development"
ENVIRONMENTS = (DEVELOPMENT, PRODUCTION)

N = TypeVar("N", int, float)

DEFAULT_PORTS: dict[str, int] = {
    "registration": 8081,
    "booking": 8082,
    "inventory": 8083,
    "administration": 8084,
    "certificates": 8085,
    "projections": 8086,
    "notifications": 8087,
    "supply": 8088,
}
# A local service's replica r listens this far above its first (`immunreg run --replicas`).
REPLICA_PORT_STEP = 100
# Where the local servers listen unless moved (see `port_offset`).
DEFAULT_POSTGRES_PORT = 55432
DEFAULT_KAFKA_PORT = 59092
DEFAULT_E2E_PORT_BASE = 18080
# The citizens' web client (`immunreg portal`): static files, no service of its own.
DEFAULT_PORTAL_PORT = 8080


def port_offset() -> int:
    """`IMMUNREG_PORT_OFFSET` moves every local port at once (PostgreSQL, Kafka, services,
    the e2e stack), so a second checkout on the same machine runs beside the first."""
    raw = os.environ.get("IMMUNREG_PORT_OFFSET", "0") or "0"
    try:
        offset = int(raw)
    except ValueError:
        raise RuntimeError(f"IMMUNREG_PORT_OFFSET must be a whole number, not {raw!r}") from None
    # The highest port a stack takes is Kafka's controller, DEFAULT_KAFKA_PORT + 1.
    highest = 65535 - DEFAULT_KAFKA_PORT - 1
    if not 0 <= offset <= highest:
        raise RuntimeError(f"IMMUNREG_PORT_OFFSET must be between 0 and {highest}, not {offset}")
    return offset


def local_port(variable: str, default: int) -> int:
    """A local server's port: the variable if set, else its default moved by the offset."""
    raw = os.environ.get(variable)
    return int(raw) if raw else default + port_offset()


def service_port(service: str) -> int:
    """The port a service listens on: `<SERVICE>_PORT`, `PORT`, else its default + offset."""
    configured = setting("PORT", service)
    return int(configured) if configured else DEFAULT_PORTS.get(service, 8080) + port_offset()


def portal_port() -> int:
    """Where `immunreg portal` listens: `PORTAL_PORT`, else 8080 moved by the offset."""
    return local_port("PORTAL_PORT", DEFAULT_PORTAL_PORT)


def cors_origins(service: str | None = None) -> tuple[str, ...]:
    """Web origins whose pages may call the services (`CORS_ORIGINS`, comma-separated;
    `<SERVICE>_CORS_ORIGINS` for one service). By default the local portal's own."""
    configured = setting("CORS_ORIGINS", service)
    if configured:
        return tuple(o.strip().rstrip("/") for o in configured.split(",") if o.strip())
    port = portal_port()
    return (f"http://127.0.0.1:{port}", f"http://localhost:{port}")


def environment() -> str:
    """`IMMUNREG_ENV`: `development` (the default: generated keys are fine) or `production`."""
    value = os.environ.get("IMMUNREG_ENV", "").strip() or DEVELOPMENT
    if value not in ENVIRONMENTS:
        raise RuntimeError(f"IMMUNREG_ENV must be one of {', '.join(ENVIRONMENTS)}, not {value!r}")
    return value


def positive_number(name: str, raw: str, kind: Callable[[str], N]) -> N:
    """`raw` read as a positive number; a start-up failure naming `name` otherwise."""
    try:
        value = kind(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise RuntimeError(f"{name} must be positive, not {raw!r}")
    return value


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
class DatabaseTimeouts:
    """Bounds on every wait for PostgreSQL, in seconds (None: wait forever).

    connect: opening a connection (TCP and start-up handshake).
    acquire: waiting for a free connection of the pool (and returning it).
    statement: the server's statement_timeout; the client gives up one second
        later (asyncpg's command_timeout), for a server that answers nothing at all.
    idle_in_transaction: the server ends a session whose transaction stays idle
        this long, so a stuck handler cannot hold locks for ever.
    """

    connect: float | None = 5.0
    acquire: float | None = 5.0
    statement: float | None = 5.0
    idle_in_transaction: float | None = 10.0


# Durations read from `<SERVICE>_<NAME>` or `<NAME>` (upper case) when set.
_SECONDS = (
    "db_connect_timeout",
    "db_acquire_timeout",
    "db_statement_timeout",
    "db_idle_in_transaction_timeout",
    "shutdown_timeout",
    "shutdown_drain_delay",
)
# Limits read the same way, which must be positive.
_POSITIVE: dict[str, Callable[[str], float]] = {
    "jwt_max_lifetime": float,
    "rate_limit_per_minute": float,
    "rate_limit_burst": int,
}


@dataclass(frozen=True)
class Settings:
    """What one service process needs to know about its surroundings."""

    service: str
    database_url: str
    db_schema: str
    kafka_bootstrap: str
    host: str = "127.0.0.1"
    port: int = 8080
    # Tokens. In development all of these may be left unset: the services trust the
    # generated development keys (keys_dir()) and the development issuer and audience.
    # Production mode (IMMUNREG_ENV=production) refuses to start without them; see
    # docs/security.md.
    environment: str = "development"
    jwt_jwks_file: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithm: str = "ES256"
    jwt_max_lifetime: float = 12 * 3600.0
    # Public routes: per client address and route, a bucket of `rate_limit_burst`
    # requests refilled at `rate_limit_per_minute`.
    rate_limit_per_minute: float = 120.0
    rate_limit_burst: int = 30
    kafka_partitions: int = 3
    relay_poll_interval: float = 0.5
    # One Kafka transaction per batch: larger batches amortise the transaction's
    # round trips and Kafka's work per transaction (bench.foundation --relay-cpu, a key
    # per row: Kafka 17.0/12.8 us an event at 1,000 against 8.6/5.9 at 2,000, PostgreSQL
    # 8.1/5.5 against 5.0/4.7, the relay 12.9/11.8 against 11.0/9.6; docs/BENCHMARKS.md).
    # Only a backlog fills a batch: a relay that keeps up sends what is there.
    relay_batch_size: int = 2000
    consumer_max_attempts: int = 3
    consumer_backoff: float = 0.2
    # Database timeouts (seconds): with PostgreSQL down or hung a command fails
    # within about the longest of them, as a 503 the client may retry, instead of
    # hanging (see docs/reliability.md, "Degraded modes").
    db_connect_timeout: float = 5.0
    db_acquire_timeout: float = 5.0
    db_statement_timeout: float = 5.0
    db_idle_in_transaction_timeout: float = 10.0
    # Graceful shutdown: SIGTERM to exit within shutdown_timeout; the first
    # shutdown_drain_delay of it /readyz answers 503 while requests are still
    # served, so load balancers stop sending before the listener closes.
    shutdown_timeout: float = 10.0
    shutdown_drain_delay: float = 2.0
    # Origins of web clients (the citizens' portal) allowed to call the API from a browser.
    cors_origins: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def database_timeouts(self) -> DatabaseTimeouts:
        """The timeouts create_pool applies to the service's pool."""
        return DatabaseTimeouts(
            connect=self.db_connect_timeout,
            acquire=self.db_acquire_timeout,
            statement=self.db_statement_timeout,
            idle_in_transaction=self.db_idle_in_transaction_timeout,
        )

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
        values: dict[str, object] = {
            "service": service,
            "database_url": database_url,
            "db_schema": setting("DB_SCHEMA", service, service) or service,
            "kafka_bootstrap": kafka,
            "host": setting("HOST", service, "127.0.0.1") or "127.0.0.1",
            "port": service_port(service),
            "environment": environment(),
            "jwt_jwks_file": setting("JWT_JWKS_FILE", service),
            "jwt_issuer": setting("JWT_ISSUER", service),
            "jwt_audience": setting("JWT_AUDIENCE", service),
            "jwt_algorithm": setting("JWT_ALGORITHM", service, "ES256") or "ES256",
            "kafka_partitions": int(setting("KAFKA_PARTITIONS", service, "3") or 3),
            "relay_poll_interval": float(setting("RELAY_POLL_INTERVAL", service, "0.5") or 0.5),
            "cors_origins": cors_origins(service),
        }
        for name in _SECONDS:
            value = setting(name.upper(), service)
            if value:
                values[name] = float(value)
        for name, kind in _POSITIVE.items():
            value = setting(name.upper(), service)
            if value:
                values[name] = positive_number(name.upper(), value, kind)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
