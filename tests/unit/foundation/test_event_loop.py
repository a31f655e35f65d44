"""IMMUNREG_EVENT_LOOP picks the loop every service serves on: uvloop unless it says asyncio."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from immunreg.eventloop import event_loop_setting, new_event_loop


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMMUNREG_EVENT_LOOP", raising=False)
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMMUNREG_EVENT_LOOP", "asyncio")
    loop = new_event_loop()
    try:
        assert isinstance(loop, asyncio.BaseEventLoop)
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_an_unknown_loop_is_a_start_up_failure_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMMUNREG_EVENT_LOOP", "trio")
    with pytest.raises(RuntimeError, match="IMMUNREG_EVENT_LOOP must be one of uvloop, asyncio"):
        event_loop_setting()
