"""The shutdown deadline: budgets shrink from SIGTERM on, and only then."""

from __future__ import annotations

from immunreg.http.shutdown import CLEANUP_RESERVE_SECONDS, Shutdown


def test_before_shutdown_every_step_gets_its_own_default() -> None:
    shutdown = Shutdown(timeout=10, drain_delay=2)
    assert not shutdown.started
    assert shutdown.remaining(15.0) == 15.0


def test_after_begin_steps_share_what_is_left_of_the_deadline() -> None:
    shutdown = Shutdown(timeout=10, drain_delay=2)
    shutdown.begin()
    assert shutdown.started
    assert 9.0 < shutdown.remaining(15.0) <= 10.0
    assert shutdown.remaining(1.0) == 1.0
    assert shutdown.request_budget == 10 - 2 - CLEANUP_RESERVE_SECONDS


def test_a_short_deadline_still_lets_requests_finish_for_a_second() -> None:
    shutdown = Shutdown(timeout=2, drain_delay=5)
    assert shutdown.drain_delay == 2
    assert shutdown.request_budget == 1.0
