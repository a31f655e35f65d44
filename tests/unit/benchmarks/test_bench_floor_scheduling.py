"""bench.floor_scheduling's arithmetic: a national run at the floor against 2 cores x 60 s,
and the check that fails a run that lost a booking on the way."""

from __future__ import annotations

from typing import Any

import pytest

from bench.floor_scheduling import Floor, Phases, figures_of, national_arithmetic, per_unit

US = 1e-6


def arithmetic(commit_us: float, **floor: float) -> dict[str, Any]:
    # 1,000,000 waiting: load 5 s (8 core-s), plan 10 s on one core; 500,000 booked.
    figures = {"load_wall": 5 * US, "load_cpu": 8 * US, "plan_wall": 10 * US, "plan_cpu": 10 * US}
    return national_arithmetic(
        Floor(**{**figures, **floor}, commit_cpu=commit_us * US),
        citizens=1_000_000,
        bookings=500_000,
        cores=2,
        seconds=60.0,
        real_us_per_booking=296.0,
    )


def test_a_commit_that_fits_after_the_plan_is_possible() -> None:
    figures = arithmetic(100)  # 50 core-seconds of commit
    assert figures["core_seconds_needed"] == 68.0  # 8 + 10 + 50
    assert figures["whole_run_floor_us_per_booking"] == 136.0  # 68 core-s / 500,000
    assert figures["least_wall_seconds_sequential"] == 40.0  # 5 + 10 + 50 / 2
    assert figures["least_wall_seconds_overlapped"] == 35.0  # 5 + 10 + (50 - 10) / 2
    # 45 s left after load and plan, on 2 cores: 90 core-s over 500,000 bookings.
    assert figures["commit_budget_us_per_booking_sequential"] == 180.0
    # ... and the plan's 10 s beside it on the other core: 100 core-s.
    assert figures["commit_budget_us_per_booking_overlapped"] == 200.0
    assert figures["verdict"] == "possible"


def test_a_commit_that_fits_only_beside_the_plan_needs_the_overlap() -> None:
    figures = arithmetic(190)  # 95 core-seconds
    assert figures["least_wall_seconds_sequential"] == 62.5
    assert figures["least_wall_seconds_overlapped"] == 57.5
    assert figures["verdict"] == "only with overlap"


def test_a_commit_over_every_budget_is_impossible() -> None:
    figures = arithmetic(250)
    assert figures["least_wall_seconds_overlapped"] == 72.5
    assert figures["verdict"] == "impossible"


def test_load_and_plan_over_the_target_leave_no_budget() -> None:
    figures = arithmetic(1, load_wall=30 * US, plan_wall=40 * US)
    assert figures["commit_budget_us_per_booking_sequential"] == 0.0
    assert figures["commit_budget_us_per_booking_overlapped"] == 0.0
    assert figures["verdict"] == "impossible"


def test_the_cores_bound_the_overlap_when_the_load_takes_more_than_one() -> None:
    figures = arithmetic(100, load_cpu=40 * US)  # the load kept many processes busy
    assert figures["least_wall_seconds_overlapped"] == 50.0  # (40 + 10 + 50) / 2
    assert figures["commit_budget_us_per_booking_overlapped"] == 140.0  # 120 - 40 - 10


def test_cpu_per_unit_is_each_groups_seconds_over_the_units() -> None:
    assert per_unit({"writer": 1.0}, {"writer": 1.5}, 1000) == {"writer": 0.0005}
    with pytest.raises(ValueError):
        per_unit({"writer": 1.0}, {"writer": 1.5}, 0)


def _phases() -> Phases:
    marks = ("load", "plan", "prepare", "commit", "committed", "drained")
    return Phases(
        cpu={m: {"postgresql": float(n), "writer": float(n)} for n, m in enumerate(marks)},
        clock={m: float(n) for n, m in enumerate(marks)},
        said={
            "plan": {"considered": 1000},
            "prepare": {"booked": 600, "seconds": 1.0, "thread_cpu": 1.0},
            "commit": {"transactions": 3},
            "committed": {"claimed": 600, "seconds": 1.0},
        },
    )


@pytest.mark.parametrize(
    ("appointments", "events", "messages", "unique", "consistent"),
    [
        (600, 600, 600, 600, True),
        (599, 600, 600, 600, False),
        (600, 599, 600, 600, False),
        (600, 600, 599, 600, False),
        (600, 600, 600, 599, False),  # one published twice, another never
    ],
)
def test_a_run_that_lost_a_booking_is_not_consistent(
    appointments: int, events: int, messages: int, unique: int, consistent: bool
) -> None:
    figures = figures_of(
        _phases(),
        {"appointments": appointments, "appointment_events": events, "outbox_left": 0},
        messages=messages,
        unique=unique,
        citizens=1000,
        commit="abc",
        load_average=([0.0], [0.0]),
        seconds=1.0,
        config=(1000, 4),
    )
    assert figures["consistent"] is consistent
    # The commit's window runs to the outbox drained: 2 s of each of 2 groups, 600 booked.
    assert figures["phases"]["commit"]["cpu_us_each_total"] == 6666.67
