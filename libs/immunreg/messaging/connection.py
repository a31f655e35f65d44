"""How every Kafka client of immunreg connects: the one place that reads the settings.

Every producer, consumer and admin client takes `**client_options()`, so a broker
that requires authentication (the Kubernetes cluster: SCRAM-SHA-512 per service,
ACLs per topic, see `immunreg.messaging.access`) is reached the same way by all of
them. Unset, it is plaintext without authentication, as the local broker expects.

- `KAFKA_SECURITY_PROTOCOL`: PLAINTEXT (default), SASL_PLAINTEXT, SASL_SSL or SSL;
- `KAFKA_SASL_MECHANISM`: SCRAM-SHA-512 (default) or PLAIN;
- `KAFKA_SASL_USERNAME`, and `KAFKA_SASL_PASSWORD_FILE`: a file holding the password
  (the key `password` of the Secret Strimzi makes for the service's KafkaUser). It is
  read each time a client is made, so a rotated password is used by the next
  connection without a restart;
- `KAFKA_SSL_CAFILE`: the CA that signed the brokers' certificates (SSL, SASL_SSL).

They are read by name only (no `<SERVICE>_` form): the library's Kafka helpers do not
know which service calls them, and each service runs as its own process anyway.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from immunreg.config import setting

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
MECHANISMS = ("SCRAM-SHA-512", "PLAIN")


@dataclass(frozen=True)
class KafkaSecurity:
    """The security settings of one process's Kafka clients."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password_file: str | None = None
    cafile: str | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_env(cls) -> KafkaSecurity:
        """The settings in the environment (and local.env); bad values fail the start."""
        protocol = (setting("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        mechanism = (setting("KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper()
        if protocol not in PROTOCOLS:
            raise RuntimeError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, not {protocol!r}"
            )
        if mechanism not in MECHANISMS:
            raise RuntimeError(
                f"KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, not {mechanism!r}"
            )
        return cls(
            protocol=protocol,
            mechanism=mechanism,
            username=setting("KAFKA_SASL_USERNAME"),
            password_file=setting("KAFKA_SASL_PASSWORD_FILE"),
            cafile=setting("KAFKA_SSL_CAFILE"),
        )

    def problems(self) -> list[str]:
        """What production mode refuses: a connection that does not authenticate."""
        if not self.sasl:
            # SSL alone encrypts but names no principal the ACLs could be written for.
            return [
                f"KAFKA_SECURITY_PROTOCOL is {self.protocol}: Kafka clients would not "
                "authenticate (use SASL_PLAINTEXT or SASL_SSL)"
            ]
        found = []
        if not self.username:
            found.append("KAFKA_SASL_USERNAME is not set")
        if not self.password_file:
            found.append("KAFKA_SASL_PASSWORD_FILE is not set")
        else:
            try:
                self.password()
            except RuntimeError as e:
                found.append(str(e))
        return found

    def password(self) -> str:
        """The password in the password file (without its final newline)."""
        if not self.password_file:
            raise RuntimeError("KAFKA_SASL_PASSWORD_FILE is not set")
        try:
            password = Path(self.password_file).read_text().rstrip("\r\n")
        except OSError as e:
            raise RuntimeError(
                f"KAFKA_SASL_PASSWORD_FILE {self.password_file} cannot be read ({e.strerror})"
            ) from None
        if not password:
            raise RuntimeError(f"KAFKA_SASL_PASSWORD_FILE {self.password_file} is empty")
        return password

    def options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = ssl.create_default_context(cafile=self.cafile)
        if self.sasl:
            if not self.username:
                raise RuntimeError(
                    f"KAFKA_SECURITY_PROTOCOL is {self.protocol}: set KAFKA_SASL_USERNAME"
                )
            options["sasl_mechanism"] = self.mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password()
        return options


def client_options() -> dict[str, Any]:
    """How a Kafka client connects, from the environment: pass as `**client_options()`."""
    return KafkaSecurity.from_env().options()
