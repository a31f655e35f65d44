"""Starting services refuses a port that is already taken, before starting anything.

A stale service left on its port would otherwise answer the new one's readiness
probe, and `make run` would report ready a process it did not start.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from immunreg.localinfra import services


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_taken_port_is_refused_and_nothing_starts(
    taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    with pytest.raises(RuntimeError, match=f"port {taken_port} for booking is taken"):
        services.start_services(
            ["registration", "booking"], {}, {"registration": 1, "booking": taken_port}
        )
    assert started == []


def test_a_live_pid_file_is_refused(taken_port: int) -> None:
    pid_file = services.run_dir() / f"booking-{taken_port}.pid"
    pid_file.write_text(str(os.getpid()))
    try:
        with pytest.raises(RuntimeError, match="booking already runs"):
            services.start_services(["booking"], {}, {"booking": taken_port})
    finally:
        pid_file.unlink()
