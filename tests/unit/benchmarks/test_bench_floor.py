"""bench.floor's arithmetic: CPU per operation, and the floors it adds up to."""

from __future__ import annotations

import pytest

from bench.floor import floor_arithmetic, per_operation_ms
from bench.summary import table


def test_cpu_per_operation_is_each_groups_seconds_over_the_operations() -> None:
    before = {"server": 10.0, "postgresql": 4.0}
    after = {"server": 10.5, "postgresql": 4.25}
    assert per_operation_ms(before, after, 1000) == {"server": 0.5, "postgresql": 0.25}
    with pytest.raises(ValueError):
        per_operation_ms(before, after, 0)


def test_a_registration_adds_up_every_part_and_a_dose_adds_the_certificate() -> None:
    parts = {
        "http": {"server": 0.4, "client": 0.3},
        "postgres": {"postgresql": 0.2, "client": 0.1},
        "kafka": {"kafka": 0.3, "consumers": 0.2, "producer": 0.05},
    }
    figures = floor_arithmetic(
        parts,
        {"sign": 0.25, "render": 2.75},
        targets={"registrations_per_s": 1500, "doses_per_s": 1000},
        cores=2,
    )
    registration = figures["registration"]
    assert registration["parts_ms"] == {
        "http_server": 0.4,
        "load_generator": 0.3,
        "postgres_transaction": 0.3,
        "kafka_event_7_groups": 0.55,
    }
    assert registration["floor_ms"] == 1.55
    assert registration["per_core_second"] == 645.2
    assert registration["cores_at_floor"] == 2.33  # 1,500 x 1.55 ms
    assert registration["share_of_cores"] == 1.16
    dose = figures["dose"]
    assert dose["floor_ms"] == 4.55
    assert dose["parts_ms"]["certificate_render"] == 2.75
    assert dose["per_core_second"] == 219.8
    assert dose["cores_at_floor"] == 4.55
    assert dose["share_of_cores"] == 2.27


def test_the_summary_row_shows_both_floors_or_says_they_were_not_measured() -> None:
    results = {
        "floor": {
            "floor": {
                "registration": {
                    "floor_ms": 1.57,
                    "per_core_second": 635.2,
                    "cores_at_floor": 2.36,
                },
                "dose": {"floor_ms": 5.26, "per_core_second": 189.9, "cores_at_floor": 5.27},
            }
        }
    }
    row = next(line for line in table(results).splitlines() if line.startswith("| floor:"))
    assert "| 1.57 ms of CPU: 635/s per core; the target needs 2.36 cores at the floor |" in row
    assert "5.26 ms of CPU: 190/s per core; the target needs 5.27 cores at the floor" in row
    empty = next(line for line in table({}).splitlines() if line.startswith("| floor:"))
    assert empty.count("not measured") == 2
