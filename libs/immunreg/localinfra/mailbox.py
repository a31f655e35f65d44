"""A local mailbox for development: an SMTP server and an SMS gateway that keep every message.

`make run` starts it (`immunreg mailbox`) so a newcomer can read the sign-in code
they "received": the page at `http://127.0.0.1:<8090 + offset>/` lists every e-mail and
SMS, `GET /v1/messages` gives the same as JSON (tests use it). It stands in for the
operator's services and behaves like them where it matters: SMTP on
`127.0.0.1:<8025 + offset>`, the SMS gateway at `POST /v1/sms` answering 202 and keeping
one message per `Idempotency-Key` (as operators' APIs do). Messages live in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import msgspec
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from immunreg.config import local_port
from immunreg.outbound import DEFAULT_SMS_GATEWAY_PORT, DEFAULT_SMTP_PORT, SmsRequest


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """One message as the mailbox got it."""

    channel: str  # "email" | "sms"
    to: str
    subject: str
    body: str
    message_id: str
    received_at: datetime


# Called with each message before it is kept (raising refuses it) or after (before the
# sender hears it was accepted): where a test stops the sender mid-send.
Hook = Callable[[Received], Awaitable[None]]


class _SmtpHandler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        part = parsed.get_body(("plain",))
        body = part.get_content().replace("\r\n", "\n") if part is not None else ""
        for recipient in envelope.rcpt_tos:
            received = Received(
                channel="email",
                to=recipient,
                subject=str(parsed.get("Subject", "")),
                body=body,
                message_id=str(parsed.get("Message-ID", "")),
                received_at=datetime.now(UTC),
            )
            await self.box.accept(received)
        return "250 Message accepted for delivery"


class Mailbox:
    """The SMTP server and the SMS gateway, sharing one list of messages."""

    def __init__(
        self, *, before_accept: Hook | None = None, after_accept: Hook | None = None
    ) -> None:
        self.messages: list[Received] = []
        self.before_accept = before_accept
        self.after_accept = after_accept
        self.smtp_port = 0
        self.http_port = 0

    async def accept(self, message: Received) -> None:
        """Keep a message (unless the hook before refuses it)."""
        if self.before_accept is not None:
            await self.before_accept(message)
        self.messages.append(message)
        if self.after_accept is not None:
            await self.after_accept(message)

    def to(self, address: str) -> list[Received]:
        """Every message sent to `address`, oldest first."""
        return [m for m in self.messages if m.to == address]

    def app(self) -> web.Application:
        """The SMS gateway and the viewer."""
        app = web.Application()
        app.add_routes(
            [
                web.post("/v1/sms", self._sms),
                web.get("/v1/messages", self._list),
                web.get("/", self._page),
                web.get("/readyz", self._ready),
            ]
        )
        return app

    async def _sms(self, request: web.Request) -> web.StreamResponse:
        try:
            sms = msgspec.json.decode(await request.read(), type=SmsRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        key = request.headers.get("Idempotency-Key") or sms.reference
        if not any(m.channel == "sms" and m.message_id == key for m in self.messages):
            await self.accept(
                Received(
                    channel="sms",
                    to=sms.to,
                    subject="",
                    body=sms.text,
                    message_id=key,
                    received_at=datetime.now(UTC),
                )
            )
        return web.json_response({"reference": key}, status=202)

    async def _ready(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def _list(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.encode({"messages": self.messages})
        return web.Response(body=body, content_type="application/json")

    async def _page(self, request: web.Request) -> web.StreamResponse:
        rows = "".join(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>".format(
                *(
                    html.escape(v)
                    for v in (
                        m.received_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                        m.channel,
                        m.to,
                        m.subject,
                        m.body,
                    )
                )
            )
            for m in reversed(self.messages)
        )
        page = (
            "<!doctype html><meta charset=utf-8><title>immunreg mailbox</title>"
            "<h1>Messages sent by immunreg (local mailbox)</h1>"
            "<table border=1 cellpadding=4><tr><th>received</th><th>channel</th><th>to</th>"
            f"<th>subject</th><th>text</th></tr>{rows}</table>"
        )
        return web.Response(text=page, content_type="text/html")

    @contextlib.asynccontextmanager
    async def running(
        self, *, host: str = "127.0.0.1", smtp_port: int = 0, http_port: int = 0
    ) -> AsyncIterator[Mailbox]:
        """Serve SMTP and HTTP until the block ends (port 0: any free port, then read back)."""
        loop = asyncio.get_running_loop()
        handler = _SmtpHandler(self)
        smtp = await loop.create_server(
            lambda: SMTP(handler, hostname="localhost"), host, smtp_port
        )
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, http_port)
        try:
            await site.start()
            self.smtp_port = _port(smtp.sockets[0].getsockname())
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            self.http_port = _port(server.sockets[0].getsockname())
            yield self
        finally:
            await runner.cleanup()
            smtp.close()
            await smtp.wait_closed()


def _port(address: Any) -> int:
    return int(address[1])


def mailbox_ports() -> tuple[int, int]:
    """(SMTP, HTTP) ports of the development mailbox, moved by IMMUNREG_PORT_OFFSET."""
    return (
        local_port("IMMUNREG_SMTP_PORT", DEFAULT_SMTP_PORT),
        local_port("IMMUNREG_SMS_GATEWAY_PORT", DEFAULT_SMS_GATEWAY_PORT),
    )


async def serve_forever() -> None:
    """`immunreg mailbox`: serve on the development ports until SIGTERM or Ctrl-C."""
    smtp_port, http_port = mailbox_ports()
    async with Mailbox().running(smtp_port=smtp_port, http_port=http_port) as box:
        print(
            f"mailbox: SMTP on 127.0.0.1:{box.smtp_port}, "
            f"messages at http://127.0.0.1:{box.http_port}/",
            flush=True,
        )
        await asyncio.Event().wait()
