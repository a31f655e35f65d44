"""bench.gc_time: every Python process a command starts reports its collector's time."""

from __future__ import annotations

import subprocess
import sys

from bench.gc_time import table

CHILD = "import gc, subprocess, sys; gc.collect(); subprocess.run([sys.executable, '-c', 'x = 1'])"


def test_the_command_and_the_processes_it_starts_each_report_their_collections() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.gc_time", "--", sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    rows = out[1:]
    assert len(rows) == 2, out  # the command and the process it started
    # The command's own full collection (gc.collect()) counts as one of generation 2.
    full = [int(row.split(" | ")[1].split(" / ")[2]) for row in rows]
    assert max(full) >= 1, out


def test_rows_come_most_collector_time_first_with_their_totals() -> None:
    lines = [
        '{"argv": ["a"], "pid": 1, "seconds": [0.1, 0.1, 0.1], "collections": [3, 2, 1],'
        ' "freed": [1, 1, 1]}',
        '{"argv": ["b", "-m", "x"], "pid": 2, "seconds": [1.0, 0.5, 2.0],'
        ' "collections": [9, 8, 7], "freed": [0, 0, 5]}',
    ]
    rows = table(lines).splitlines()
    assert rows[1] == "3.50 (1.00 / 0.50 / 2.00) | 9 / 8 / 7 | 5 | b -m x (pid 2)"
    assert rows[2].startswith("0.30 (0.10 / 0.10 / 0.10) | 3 / 2 / 1 | 3 | a (pid 1)")
