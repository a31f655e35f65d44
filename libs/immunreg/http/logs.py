"""Structured JSON logs, one line per record, tagged with the correlation id."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

CORRELATION_ID: ContextVar[str | None] = ContextVar("immunreg_correlation_id", default=None)
"""The correlation id of the request (or message) being handled in this task."""

# Every attribute a bare LogRecord has; anything else came in through `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_RESERVED = frozenset({"ts", "level", "logger", "msg", "service", "correlation_id", "exc"})

# Log extras can be anything; an unknown type is logged as its str() rather than lost.
_encoder = msgspec.json.Encoder(enc_hook=str)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ts, level, logger, msg, service, ids, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "service": self.service,
            "correlation_id": CORRELATION_ID.get(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in _RESERVED:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _encoder.encode(line).decode()


class _JsonHandler(logging.StreamHandler[TextIO]):
    """Marks the handler we installed, so a second configure call replaces nothing twice."""


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send the root logger's records to stderr as JSON lines; idempotent."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    handler = next((h for h in root.handlers if isinstance(h, _JsonHandler)), None)
    if handler is None:
        handler = _JsonHandler(sys.stderr)
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter(service))
