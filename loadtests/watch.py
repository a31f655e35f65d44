"""What the system looked like while the load ran: one JSON line per sample.

Every `interval` seconds: each service's consumer lag and outbox backlog as the
service itself reports them on /metrics, and CPU (share of one core since the last
sample) and memory of every process that takes part: each service, each load
generator, PostgreSQL (the postmaster and its backends together) and Kafka. Memory
is the proportional set size (PSS): PostgreSQL's backends share its buffers, and
adding up their resident sizes would count those once per backend. Read from /proc,
so Linux only (where the project runs).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from immunreg.demo import delivery_backlog
from immunreg.localinfra.stack import local_kafka, local_postgres

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int, *, memory: bool = True) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds used, PSS bytes) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        proportional = 0
        if memory:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    proportional = int(line.split()[1]) * 1024
                    break
    except (OSError, IndexError, ValueError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS, proportional


def _children(pid: int) -> list[int]:
    """Every process whose parent is `pid` (PostgreSQL's backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name), memory=False)
            if stat is not None and stat[0] == pid:
                found.append(int(entry.name))
    return found


def _descendants(pids: list[int]) -> list[int]:
    """Every process below `pids`, at any depth (a run worker's planner is the
    service's grandchild), from one read of /proc."""
    below: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name), memory=False)
            if stat is not None:
                below.setdefault(stat[0], []).append(int(entry.name))
    found: list[int] = []
    todo = list(pids)
    while todo:
        children = below.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _pid_of(pid_file: Path) -> list[int]:
    try:
        first = pid_file.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return []
    return [int(first)] if first.isdigit() else []


def server_groups() -> dict[str, list[int]]:
    """This checkout's PostgreSQL (postmaster; its backends are its children) and Kafka."""
    return {
        "postgresql": _pid_of(local_postgres().data_dir / "postmaster.pid"),
        "kafka": _pid_of(local_kafka().pid_file),
    }


def _reaped(pid: int) -> float:
    """CPU seconds of the children `pid` has waited for (they have exited): what
    PostgreSQL's postmaster keeps of a backend, an autovacuum worker, gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[13]) + int(fields[14])) / TICKS


def cpu_seconds(groups: dict[str, list[int]], with_children: set[str]) -> dict[str, float]:
    """CPU seconds each group's live processes have used so far; for the groups named in
    `with_children`, their descendants' too, those that exited included (so a backend
    that ends between two readings does not take its CPU with it)."""
    used: dict[str, float] = {}
    for name, pids in groups.items():
        every = [*pids, *_descendants(pids)] if name in with_children else pids
        used[name] = sum(stat[1] for pid in every if (stat := _stat(pid, memory=False)))
        if name in with_children:
            used[name] += sum(_reaped(pid) for pid in every)
    return used


def cpu_between(samples: list[dict[str, Any]], start: float, end: float) -> float:
    """Mean CPU (% of one core) of every process watched, summed, over the samples taken
    in [start, end] (seconds on the samples' clock)."""
    inside = [s for s in samples if start <= s["t"] <= end]
    if not inside:
        return float("nan")
    totals: list[float] = [sum(p["cpu_pct"] for p in s["processes"].values()) for s in inside]
    return sum(totals) / len(totals)


@dataclass
class Watch:
    """Samples in a thread of its own until `stop`; `groups` names processes to account."""

    out: IO[str]
    urls: dict[str, str]
    groups: dict[str, list[int]]
    with_children: set[str] = field(default_factory=set)
    interval: float = 2.0
    t0: float = field(default_factory=time.time)
    _previous: dict[str, tuple[float, float]] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin sampling (the first sample is at once)."""
        self._thread = threading.Thread(target=self._loop, name="load-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Take a last sample and stop."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stopping.wait(self.interval):
                self.sample()
                return

    def sample(self) -> dict[str, object]:
        """One line: per service lag and backlog, per process group CPU and memory."""
        now = time.time()
        delivery = {name: delivery_backlog(url) for name, url in self.urls.items()}
        processes: dict[str, dict[str, float]] = {}
        for group, pids in self.groups.items():
            everyone = list(pids)
            if group in self.with_children:
                everyone += _descendants(pids)
            stats = [s for s in map(_stat, everyone) if s is not None]
            if not stats:
                continue
            cpu = sum(s[1] for s in stats)
            if group in self.with_children:
                # A descendant that exited is counted in its parent's reaped CPU: a run
                # worker's or planner's CPU stays the group's after it ends.
                cpu += sum(_reaped(pid) for pid in everyone)
            before = self._previous.get(group)
            self._previous[group] = (now, cpu)
            share = (cpu - before[1]) / (now - before[0]) if before and now > before[0] else 0.0
            processes[group] = {
                "cpu_pct": round(100 * max(share, 0.0), 1),
                "pss_mb": round(sum(s[2] for s in stats) / 2**20, 1),
            }
        line: dict[str, object] = {
            "t": round(now - self.t0, 3),
            "delivery": delivery,
            "processes": processes,
        }
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()
        return line
