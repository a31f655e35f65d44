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


# A child that starts a grandchild burning CPU, reports when it has burnt, then waits.
NEST = (
    "import subprocess, sys\n"
    "g = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdout=subprocess.PIPE)\n"
    "print(g.stdout.readline().decode().strip(), flush=True)\n"
    "sys.stdin.read()\n"
    "g.wait()\n"
)
BURN_AND_WAIT = BURN + "import sys\nprint('burnt', flush=True)\nsys.stdin.read()\n"


def test_a_live_grandchilds_cpu_is_counted() -> None:
    """A run worker's planner is the service's grandchild: its CPU is booking's."""
    me = {"here": [os.getpid()]}
    before = cpu_seconds(me, {"here"})["here"]
    with subprocess.Popen(
        [sys.executable, "-c", NEST, BURN_AND_WAIT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == b"burnt"  # the grandchild lives on
        during = cpu_seconds(me, {"here"})["here"]
        child.stdin.close()
    assert during - before >= 0.25
