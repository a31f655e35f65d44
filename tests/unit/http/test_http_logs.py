from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from immunreg.http.logs import CORRELATION_ID, JsonFormatter, configure_logging


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # Start from a root logger without our handler (an app built earlier may have added it).
    root.handlers[:] = [h for h in handlers if not isinstance(h.formatter, JsonFormatter)]
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_twice_installs_one_handler(root_logger: logging.Logger) -> None:
    before = len(root_logger.handlers)
    configure_logging("booking", "debug")
    configure_logging("booking", "INFO")
    assert len(root_logger.handlers) == before + 1
    assert sum(isinstance(h.formatter, JsonFormatter) for h in root_logger.handlers) == 1
    assert root_logger.level == logging.INFO


def _record(msg: str, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("kaput")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("booking.slots", logging.WARNING, __file__, 1, msg, (3,), exc_info)
    record.__dict__.update(extra)
    return record


def test_one_json_line_with_correlation_and_extras() -> None:
    formatter = JsonFormatter("booking")
    token = CORRELATION_ID.set("6f1c2a52-0000-4000-8000-000000000000")
    try:
        line = formatter.format(_record("slot %s full", site_id="s-1", when=object()))
    finally:
        CORRELATION_ID.reset(token)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["msg"] == "slot 3 full"
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "booking.slots"
    assert doc["service"] == "booking"
    assert doc["correlation_id"] == "6f1c2a52-0000-4000-8000-000000000000"
    assert doc["site_id"] == "s-1"
    assert doc["when"].startswith("<object")
    assert doc["ts"].endswith("+00:00")
    assert "args" not in doc
    assert "exc" not in doc


def test_exceptions_are_included() -> None:
    doc = json.loads(JsonFormatter("x").format(_record("failed %d times", exc=True)))
    assert doc["correlation_id"] is None
    assert "ValueError: kaput" in doc["exc"]
