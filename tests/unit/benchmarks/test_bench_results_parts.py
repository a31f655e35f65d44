"""bench.results.record with parts: bench.floor and bench.floor --scheduling share the
`floor` section, and neither's run erases the other's figures."""

from __future__ import annotations

import json
from pathlib import Path

from bench.results import record


def test_a_part_and_the_section_it_lives_in_keep_each_other(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    record("floor", {"http": 1}, postgres="17", path=path)
    record("floor", {"booked": 2}, postgres="17", path=path, part="scheduling")
    floor = json.loads(path.read_text())["floor"]
    assert floor["http"] == 1
    assert floor["scheduling"]["booked"] == 2
    assert "measured_at" in floor["scheduling"]

    record("floor", {"http": 3}, postgres="17", path=path, keep=("scheduling",))
    floor = json.loads(path.read_text())["floor"]
    assert floor["http"] == 3
    assert floor["scheduling"]["booked"] == 2

    record("floor", {"http": 4}, postgres="17", path=path)  # a section rewritten whole
    assert "scheduling" not in json.loads(path.read_text())["floor"]
