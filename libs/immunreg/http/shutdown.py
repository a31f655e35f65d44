"""Graceful shutdown: out of rotation first, then drain, all within one deadline.

On SIGTERM (or Ctrl-C) `/readyz` answers 503 `shutting_down` at once while the
service keeps serving for `shutdown_drain_delay` seconds, so load balancers and
Kubernetes endpoints stop sending before the listener closes. Then aiohttp's own
graceful shutdown runs (aiohttp 3.9+): it closes the listener and idle
keep-alive connections, lets in-flight handlers finish for up to its
`shutdown_timeout`, and only then runs the cleanup contexts, where the consumers
commit and leave their groups and the relay publishes what is committed, each
within what is left of the deadline. A second signal skips the rest of the delay.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web

from immunreg.config import Settings
from immunreg.eventloop import new_event_loop

log = logging.getLogger(__name__)

# Of the deadline, what the cleanup contexts keep for themselves (relay flush,
# consumers leaving their groups, closing the pool) after in-flight requests.
CLEANUP_RESERVE_SECONDS = 3.0


class Shutdown:
    """When shutdown began, and how much of its deadline is left."""

    def __init__(self, timeout: float, drain_delay: float) -> None:
        self.timeout = timeout
        self.drain_delay = min(drain_delay, timeout)
        self._deadline: float | None = None

    @property
    def started(self) -> bool:
        """Whether a shutdown was requested (readiness then answers 503)."""
        return self._deadline is not None

    def begin(self) -> None:
        """Start the clock (a second call keeps the first deadline)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout

    def remaining(self, default: float) -> float:
        """Seconds left before the deadline, at most `default`; `default` if not shutting down."""
        if self._deadline is None:
            return default
        return max(min(self._deadline - time.monotonic(), default), 0.0)

    @property
    def request_budget(self) -> float:
        """How long aiohttp waits for in-flight handlers once the listener is closed."""
        return max(self.timeout - self.drain_delay - CLEANUP_RESERVE_SECONDS, 1.0)


SHUTDOWN_KEY = web.AppKey("shutdown", Shutdown)


def run_app(app: web.Application, settings: Settings) -> None:
    """Serve `app` until SIGTERM or SIGINT, then shut down gracefully (see module doc).

    On the loop `IMMUNREG_EVENT_LOOP` names (immunreg.eventloop: uvloop by default).
    """
    shutdown = app[SHUTDOWN_KEY]

    async def install_signal_handlers(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        log.info("event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)

        def requested(signum: signal.Signals) -> None:
            if shutdown.started:
                raise web.GracefulExit()  # asked twice: stop waiting for the balancers
            shutdown.begin()
            log.info(
                "%s: not ready from now; stopping in %.1f s, done within %.1f s",
                signum.name,
                shutdown.drain_delay,
                shutdown.timeout,
            )
            loop.call_later(shutdown.drain_delay, _graceful_exit)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, requested, signum)

    app.on_startup.append(install_signal_handlers)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        handle_signals=False,
        shutdown_timeout=shutdown.request_budget,
        loop=new_event_loop(),
    )


def _graceful_exit() -> None:
    # The exception aiohttp's own signal handlers raise: run_app catches it and
    # runs the graceful shutdown described above.
    raise web.GracefulExit()
