"""The operator's commands parse as documented and print aligned tables."""

from __future__ import annotations

import pytest

from immunreg.cli import build_parser
from immunreg.cli_ops import moved_table, status_table
from immunreg.messaging.positions import GroupStatus, Moved, PartitionPosition


def test_status_table_sums_the_lag_and_marks_partitions_never_consumed() -> None:
    status = GroupStatus(
        group="certificates",
        state="Stable",
        members=2,
        partitions=[
            PartitionPosition(
                topic="registration.events.v1",
                partition=0,
                next_offset=120,
                end_offset=125,
                lag=2,
                updated_at="2026-12-06T06:00:00.123456+00:00",
            ),
            PartitionPosition(
                topic="registration.events.v1",
                partition=1,
                next_offset=None,
                end_offset=7,
                lag=3,
                updated_at=None,
            ),
        ],
    )
    lines = status_table(status).splitlines()
    assert lines[0] == "group certificates: Stable, 2 member(s), lag 5"
    assert lines[1].split() == [
        "TOPIC",
        "PARTITION",
        "NEXT",
        "OFFSET",
        "END",
        "OFFSET",
        "LAG",
        "UPDATED",
        "AT",
    ]
    assert lines[2].split() == [
        "registration.events.v1",
        "0",
        "120",
        "125",
        "2",
        "2026-12-06T06:00:00",
    ]
    assert lines[3].split() == ["registration.events.v1", "1", "-", "7", "3", "-"]
    # Aligned: every column starts where its header does.
    assert lines[2].index("125") == lines[1].index("END OFFSET") == lines[3].index("7  ")


def test_moved_table_shows_before_and_after() -> None:
    table = moved_table([Moved(topic="t", partition=2, before=None, after=0)])
    assert table.splitlines()[1].split() == ["t", "2", "-", "0"]


def test_a_reset_needs_exactly_one_destination() -> None:
    parser = build_parser(["consumers"])
    args = parser.parse_args(["consumers", "reset", "booking", "--topic", "x", "--to-end"])
    assert args.to_end and args.to_offset is None
    with pytest.raises(SystemExit):
        parser.parse_args(["consumers", "reset", "booking", "--topic", "x"])
    with pytest.raises(SystemExit):
        parser.parse_args(
            ["consumers", "reset", "booking", "--topic", "x", "--to-end", "--to-beginning"]
        )


def test_run_takes_a_count_of_replicas_of_at_least_one() -> None:
    parser = build_parser(["run"])
    assert parser.parse_args(["run", "--replicas", "3"]).replicas == 3
    assert parser.parse_args(["run"]).replicas == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--replicas", "0"])
