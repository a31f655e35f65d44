"""Messages that leave the registry: e-mail over SMTP and SMS through an operator's HTTP gateway.

One module for every sender (registration's sign-in codes, the notifications service).
Each message carries a stable `message_id`: the SMTP `Message-ID` header and the SMS
gateway's `Idempotency-Key`, so a message sent again after a crash can be recognised
(the gateway keeps one; a mail client sees the same Message-ID twice).

A failure is `TemporaryFailure` (try again later: the server is down, busy or said 4xx)
or `PermanentFailure` (sending again would fail the same way: a refused recipient, a 4xx
from the gateway other than 408/429). Contact details and message text are never logged.

Settings (`<SERVICE>_<NAME>`, then `<NAME>`):

- `SMTP_HOST`, `SMTP_PORT` (default 127.0.0.1 and 8025 + IMMUNREG_PORT_OFFSET: the local
  mailbox `make run` starts), `SMTP_USERNAME`, `SMTP_PASSWORD`, `SMTP_STARTTLS` (`true`),
  `MAIL_FROM` (default `immunreg@localhost`);
- `SMS_GATEWAY_URL` (default the local gateway, `http://127.0.0.1:<8090 + offset>/v1/sms`),
  `SMS_GATEWAY_TOKEN_FILE` (a bearer token in a file, not in the environment), `SMS_SENDER`.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path

import aiohttp
import aiosmtplib
import msgspec

from immunreg.config import local_port, setting

DEFAULT_SMTP_PORT = 8025
DEFAULT_SMS_GATEWAY_PORT = 8090
MAIL_DOMAIN = "immunreg"
SEND_TIMEOUT = 10.0


class Channel(StrEnum):
    """How a message reaches a person."""

    EMAIL = "email"
    SMS = "sms"


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    """One message to one address; `message_id` is the same on every attempt."""

    message_id: str
    channel: Channel
    to: str
    subject: str
    body: str


class TemporaryFailure(Exception):
    """The message was not sent; trying again later may work."""


class PermanentFailure(Exception):
    """The message was not sent; trying again would fail the same way."""


class SmsRequest(msgspec.Struct, frozen=True):
    """What the gateway is sent (JSON): the operator's API takes a recipient and a text."""

    to: str
    text: str
    sender: str
    reference: str


@dataclass(frozen=True)
class OutboundConfig:
    """Where and as whom messages are sent."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = DEFAULT_SMTP_PORT
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "immunreg@localhost"
    sms_gateway_url: str = f"http://127.0.0.1:{DEFAULT_SMS_GATEWAY_PORT}/v1/sms"
    sms_gateway_token: str | None = None
    sms_sender: str = "immunreg"

    @classmethod
    def from_settings(cls, service: str, extra: dict[str, str] | None = None) -> OutboundConfig:
        """The configuration of `service` (settings in `extra` win over the environment)."""
        extra = extra or {}

        def get(name: str) -> str | None:
            return extra.get(name) or setting(name, service)

        token_file = get("SMS_GATEWAY_TOKEN_FILE")
        try:
            token = Path(token_file).read_text().strip() if token_file else None
        except OSError as exc:
            raise RuntimeError(f"SMS_GATEWAY_TOKEN_FILE {token_file}: {exc.strerror}") from None
        sms_port = local_port("IMMUNREG_SMS_GATEWAY_PORT", DEFAULT_SMS_GATEWAY_PORT)
        return cls(
            smtp_host=get("SMTP_HOST") or "127.0.0.1",
            smtp_port=int(get("SMTP_PORT") or local_port("IMMUNREG_SMTP_PORT", DEFAULT_SMTP_PORT)),
            smtp_username=get("SMTP_USERNAME"),
            smtp_password=get("SMTP_PASSWORD"),
            smtp_starttls=(get("SMTP_STARTTLS") or "").lower() == "true",
            mail_from=get("MAIL_FROM") or "immunreg@localhost",
            sms_gateway_url=get("SMS_GATEWAY_URL") or f"http://127.0.0.1:{sms_port}/v1/sms",
            sms_gateway_token=token,
            sms_sender=get("SMS_SENDER") or "immunreg",
        )


def message_id_header(message_id: str) -> str:
    """The RFC 5322 Message-ID of a message."""
    return f"<{message_id}@{MAIL_DOMAIN}>"


class Outbound:
    """Sends `Outgoing` messages by e-mail or SMS; one per process (it holds an HTTP session)."""

    def __init__(self, config: OutboundConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the gateway's HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, message: Outgoing) -> None:
        """Send it, or raise TemporaryFailure / PermanentFailure."""
        if message.channel == Channel.EMAIL:
            await self._send_email(message)
        else:
            await self._send_sms(message)

    async def _send_email(self, message: Outgoing) -> None:
        config = self.config
        email = EmailMessage()
        email["From"] = config.mail_from
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Message-ID"] = message_id_header(message.message_id)
        email.set_content(message.body)
        try:
            await aiosmtplib.send(
                email,
                hostname=config.smtp_host,
                port=config.smtp_port,
                username=config.smtp_username,
                password=config.smtp_password,
                # Required when configured, else used when the server offers it.
                start_tls=True if config.smtp_starttls else None,
                timeout=SEND_TIMEOUT,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            if all(500 <= code < 600 for code in codes):
                raise PermanentFailure(f"the mail server refused the recipient ({codes})") from None
            raise TemporaryFailure(f"the mail server deferred the recipient ({codes})") from None
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"the mail server answered {exc.code}") from None
            raise TemporaryFailure(f"the mail server answered {exc.code}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(
                f"the mail server is unreachable ({type(exc).__name__})"
            ) from None

    async def _send_sms(self, message: Outgoing) -> None:
        config = self.config
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT))
        headers = {"Idempotency-Key": message.message_id, "Content-Type": "application/json"}
        if config.sms_gateway_token:
            headers["Authorization"] = f"Bearer {config.sms_gateway_token}"
        payload = msgspec.json.encode(
            SmsRequest(message.to, message.body, config.sms_sender, message.message_id)
        )
        try:
            async with self._session.post(
                config.sms_gateway_url, data=payload, headers=headers
            ) as response:
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TemporaryFailure(
                f"the SMS gateway is unreachable ({type(exc).__name__})"
            ) from None
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise TemporaryFailure(f"the SMS gateway answered {status}")
        raise PermanentFailure(f"the SMS gateway refused the message ({status})")
