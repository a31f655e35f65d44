"""CPU per replayed event: `bench.projections --replay-only`, its process and PostgreSQL sampled.

Run with `.venv/bin/python -m bench.replay_cpu [bench.projections arguments]` from a checkout
(the command runs `python -m bench.projections --replay-only ...` in the current folder, so a
worktree of another commit with this file copied in measures that commit). Every second
it reads the CPU time of the benchmark's process and of this checkout's PostgreSQL (each
with its descendants, alive and reaped: a rebuild's helper processes, the backends) from
/proc; the replay's window is from the line that starts the replay to the replay's
seconds later. On a shared machine the wall clock says how busy the others were; CPU per
event says what the code costs, and events per core-second (Python and PostgreSQL) too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from immunreg.paths import state_dir

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int, children: bool = False) -> float:
    """Seconds of CPU of one process (and, with `children`, of its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICKS


def _tree_cpu(pid: int) -> float:
    """Seconds of CPU of a process and its descendants, alive and reaped (the postmaster
    and its backends; the benchmark and a rebuild's helper processes)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return _cpu(pid, children=True) + sum(_tree_cpu(int(k)) for k in kids)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    pid_file = state_dir() / "postgres" / "data" / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0])
    command = [sys.executable, "-m", "bench.projections", "--replay-only", *args]
    log = state_dir() / "replay_cpu.log"
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    samples: list[tuple[float, float, float, float]] = []  # time, bench, postgres, load
    started_at: float | None = None
    while process.poll() is None:
        now = time.monotonic()
        if started_at is None and "replaying every topic" in log.read_text():
            started_at = now
        load = float(Path("/proc/loadavg").read_text().split()[0])
        samples.append((now, _tree_cpu(process.pid), _tree_cpu(postmaster), load))
        time.sleep(1.0)
    output = log.read_text()
    sys.stdout.write(output)
    found = re.search(r"replay: \{'events': (\d+), .*?'seconds': ([\d.]+)", output)
    if process.returncode or found is None or started_at is None:
        print("no replay figures in the output", file=sys.stderr)
        return 1
    events, seconds = int(found.group(1)), float(found.group(2))
    first = min(samples, key=lambda s: abs(s[0] - started_at))
    last = min(samples, key=lambda s: abs(s[0] - started_at - seconds))
    window = [s[3] for s in samples if first[0] <= s[0] <= last[0]]
    python, postgres = last[1] - first[1], last[2] - first[2]
    print(
        f"replay {events:,} events in {seconds}s = {events / seconds:,.0f} events/s; "
        f"CPU in that window: python {python:.1f} s ({python / events * 1e6:.1f} us/event), "
        f"postgres {postgres:.1f} s ({postgres / events * 1e6:.1f} us/event), "
        f"{events / (python + postgres):,.0f} events per core-second; "
        f"load average {min(window):.1f}-{max(window):.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
