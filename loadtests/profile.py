"""Profiles of every service during the day's busiest part, with py-spy (issue 16).

One `py-spy record` per service and format (raw collapsed stacks for the summary's
table, an SVG flamegraph for people), all at once, `--nonblocking` so the services are
never paused. A profile that could not be taken leaves its reason, never a failed run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RATE = 50  # samples per second


def top_functions(collapsed: str, count: int = 5) -> list[tuple[str, int]]:
    """The `count` functions with the most own samples (the stack's last frame) in
    py-spy's raw output: one `frame;frame;...;leaf N` line per distinct stack."""
    own: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, samples = line.rstrip().rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        own[stack.rpartition(";")[2]] += int(samples)
    return sorted(own.items(), key=lambda item: (-item[1], item[0]))[:count]


@dataclass
class ServiceProfile:
    """One service's profile: its files, or why there are none."""

    name: str
    raw: Path
    svg: Path
    failure: str | None = None


@dataclass
class Profiler:
    """Records `pids` for `seconds` from the wall-clock moment `at`, in a thread."""

    folder: Path
    pids: dict[str, int]
    at: float
    seconds: float
    profiles: list[ServiceProfile] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._record, name="profiler", daemon=True)
        self._thread.start()

    def finish(self) -> list[ServiceProfile]:
        """Wait for the recordings (they end on their own after `seconds`)."""
        if self._thread is not None:
            self._thread.join(timeout=self.seconds + 120)
        return self.profiles

    def _record(self) -> None:
        try:
            self._record_all()
        except OSError as error:  # py-spy could not even be started
            self.profiles = [
                ServiceProfile(name, Path(), Path(), f"py-spy did not start: {error}")
                for name in self.pids
            ]

    def _record_all(self) -> None:
        spy = _py_spy()
        if spy is None:
            self.profiles = [
                ServiceProfile(name, Path(), Path(), "py-spy is not installed")
                for name in self.pids
            ]
            return
        time.sleep(max(0.0, self.at - time.time()))
        running: list[tuple[ServiceProfile, list[subprocess.Popen[bytes]]]] = []
        for name, pid in self.pids.items():
            slug = name.replace(" ", "-")
            profile = ServiceProfile(
                name, self.folder / f"profile-{slug}.txt", self.folder / f"profile-{slug}.svg"
            )
            log = profile.raw.with_suffix(".log")
            recorders = [
                _spawn(spy, pid, self.seconds, kind=kind, out=path, log=log)
                for kind, path in (("raw", profile.raw), ("flamegraph", profile.svg))
            ]
            running.append((profile, recorders))
        for profile, recorders in running:
            codes: list[int | None] = []
            for recorder in recorders:
                try:
                    codes.append(recorder.wait(timeout=self.seconds + 60))
                except subprocess.TimeoutExpired:
                    recorder.kill()
                    codes.append(None)
            log = profile.raw.with_suffix(".log")
            if codes != [0, 0] or not profile.raw.exists():
                said = log.read_text(errors="replace").splitlines() if log.exists() else []
                # py-spy's own sentence, not the backtrace under it.
                why = [x for x in said if x.startswith("Error:")] or [x for x in said if x]
                profile.failure = f"py-spy exited {codes}: " + (why[0] if why else "no output")
            self.profiles.append(profile)


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _spawn(
    spy: str, pid: int, seconds: float, *, kind: str, out: Path, log: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", str(RATE), "--nonblocking",
            "--format", kind, "--output", str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("a"),
    )  # fmt: skip


def section(profiles: list[ServiceProfile], seconds: float, at_clock: str) -> list[str]:
    """summary.md's "Where the time went": per service, the top 5 functions by own samples."""
    out = [
        "## Where the time went",
        "",
        f"py-spy, {seconds:g} s from {at_clock} (the morning peak) at {RATE} samples/s, every "
        "service at once, non-blocking. Own samples: the function itself was running. "
        "`run_app` as its own leaf is the event loop's native code (uvloop: I/O, "
        "callbacks), below Python.",
        "",
    ]
    if not profiles:
        return [*out, "No profile taken: the profile window was off for this run.", ""]
    for p in profiles:
        if p.failure is not None:
            out += [f"### {p.name}", "", f"No profile taken: {p.failure}", ""]
            continue
        top = top_functions(p.raw.read_text(errors="replace"))
        out += [
            f"### {p.name}",
            "",
            f"[flamegraph]({p.svg.name}) · [collapsed stacks]({p.raw.name})",
            "",
            "| function | own samples |",
            "|---|---:|",
        ]
        out += [f"| `{f}` | {n} |" for f, n in top] or ["| (no samples) | 0 |"]
        out.append("")
    return out
