"""bench.http_rates: a rate at which nothing was achieved is reported, not a crash."""

from __future__ import annotations

from typing import Any

from bench.http_rates import _mean_of_rounds, _step_costs


def test_a_step_with_nothing_achieved_is_reported_as_zero() -> None:
    costs = _step_costs(0.0, system_cpu=85.04, services_cpu=40.0)
    assert costs == {
        "system_cpu_pct": 85.0,
        "per_core_per_s": 0.0,
        "services_cpu_ms_per_request": None,
    }
    # A step that achieved something: per core from the system's CPU, per request from the
    # services' (40% of a core at 80/s is 5 ms a request).
    assert _step_costs(80.0, system_cpu=160.0, services_cpu=40.0) == {
        "system_cpu_pct": 160.0,
        "per_core_per_s": 50.0,
        "services_cpu_ms_per_request": 5.0,
    }


def _step(rate: float, achieved: float) -> dict[str, Any]:
    return {
        "target_per_s": rate,
        "achieved_per_s": achieved,
        "p50_ms": 20.0,
        "p99_ms": 90.0,
        **_step_costs(achieved, system_cpu=100.0, services_cpu=30.0),
    }


def test_the_mean_of_rounds_keeps_what_was_measured_beside_a_step_of_nothing() -> None:
    rounds = [
        {
            "registrations": [_step(20, 20.0), _step(40, 40.0)],
            "doses": [_step(20, 0.0)],
            "dose_phase_seconds_until_drained": 3.0,
        },
        {
            "registrations": [_step(20, 20.0)],
            "doses": [_step(20, 20.0)],
            "dose_phase_seconds_until_drained": 5.0,
        },
    ]
    figures = _mean_of_rounds(rounds)
    assert figures["registrations_per_round"] == [40.0, 20.0]
    assert figures["doses_per_round"] == [0.0, 20.0]
    assert figures["doses_achieved_per_s"] == 10.0
    # Only the round that recorded doses has a cost per dose.
    assert figures["doses_services_cpu_ms_per_request"] == 15.0
    assert figures["doses_at_rate"]["20"]["services_cpu_ms_per_request"] == 15.0
