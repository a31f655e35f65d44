"""py-spy's collapsed stacks read into the load report's "Where the time went"."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from loadtests.profile import Profiler, ServiceProfile, section, top_functions

# py-spy's raw format: one distinct stack per line, root first, then its sample count.
COLLAPSED = """\
<module> (cli.py:10);run (runners.py:44);select (selectors.py:468) 120
<module> (cli.py:10);run (runners.py:44);handle (api.py:80);decode (msgspec.py:3) 30
<module> (cli.py:10);run (runners.py:44);handle (api.py:80) 7
<module> (cli.py:10);consume (consumer.py:5);decode (msgspec.py:3) 25
<module> (cli.py:10);consume (consumer.py:5);execute (asyncpg.py:9) 40
<module> (cli.py:10);consume (consumer.py:5);evolve (domain.py:2) 2
<module> (cli.py:10);consume (consumer.py:5);decide (domain.py:1) 2
"""


def test_own_samples_are_the_leaf_frames_summed_across_stacks() -> None:
    assert top_functions(COLLAPSED) == [
        ("select (selectors.py:468)", 120),
        ("decode (msgspec.py:3)", 55),  # the leaf of two different stacks
        ("execute (asyncpg.py:9)", 40),
        ("handle (api.py:80)", 7),  # its own samples only, not its callee's 30
        ("decide (domain.py:1)", 2),  # ties by name: decide before evolve
    ]


def test_frames_with_spaces_and_bad_lines_are_read_or_skipped() -> None:
    collapsed = "a (x.py:1);<lambda> (y z.py:2) 3\nnot a stack line\n\nb (x.py:4) 1\n"
    assert top_functions(collapsed, count=1) == [("<lambda> (y z.py:2)", 3)]


def test_the_section_names_each_service_and_why_a_profile_is_missing(tmp_path: Path) -> None:
    raw = tmp_path / "profile-booking.txt"
    raw.write_text(COLLAPSED)
    profiles = [
        ServiceProfile("booking", raw, tmp_path / "profile-booking.svg"),
        ServiceProfile("supply", Path(), Path(), "py-spy exited [1, 1]: Permission denied"),
    ]
    text = "\n".join(section(profiles, 20, "09:00"))
    assert "## Where the time went" in text
    assert "[flamegraph](profile-booking.svg)" in text
    assert "| `select (selectors.py:468)` | 120 |" in text
    assert "| `evolve (domain.py:2)` |" not in text  # sixth: beyond the top 5
    assert "### supply\n\nNo profile taken: py-spy exited [1, 1]: Permission denied" in text
    assert "window was off" in "\n".join(section([], 0, "09:00"))


def test_a_profile_that_cannot_be_taken_says_why_and_raises_nothing(tmp_path: Path) -> None:
    # A process that has ended: py-spy cannot attach, as when ptrace is not allowed.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    profiler = Profiler(tmp_path, {"booking": gone.pid}, time.time(), 1)
    profiler.start()
    [profile] = profiler.finish()
    assert profile.failure is not None
    assert "No profile taken: py-spy" in "\n".join(section([profile], 1, "09:00"))
