"""CPU read from /proc counts a group's children, those that have exited too."""

from __future__ import annotations

import os
import subprocess
import sys

from loadtests.watch import cpu_seconds

# A child that uses at least 0.3 s of CPU, then exits.
BURN = "import time\nwhile time.process_time() < 0.3:\n    pass\n"


def test_an_exited_childs_cpu_stays_counted() -> None:
    me = {"here": [os.getpid()]}
    before = cpu_seconds(me, {"here"})["here"]
    subprocess.run([sys.executable, "-c", BURN], check=True)  # waited for: reaped
    after = cpu_seconds(me, {"here"})["here"]
    assert after - before >= 0.25
    # Without children asked for, only this process's own CPU is counted.
    alone_before = cpu_seconds(me, set())["here"]
    subprocess.run([sys.executable, "-c", BURN], check=True)
    assert cpu_seconds(me, set())["here"] - alone_before < 0.25
