"""Time in CPython's cyclic collector, process by process, while a command runs.

Run with `.venv/bin/python -m bench.gc_time -- <command>`, for example
`.venv/bin/python -m bench.gc_time -- .venv/bin/python -m bench.scheduling --citizens
1000000` or `... -- .venv/bin/python -m bench.replay_cpu`. The command runs with
bench/gc_site first on PYTHONPATH, so every Python process it starts (the command, the
services of an IsolatedStack, a scheduling run's worker, a rebuild's helpers) loads
bench/gc_site/sitecustomize.py, which times each collection (`gc.callbacks`) and writes
its totals when it exits. Then one row per process: seconds in the collector, full
(generation 2) and young collections, and the objects they freed. A process that is
killed writes nothing. (It stands in for any other sitecustomize on the path.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

SITE = Path(__file__).resolve().parent / "gc_site"


def table(lines: Sequence[str]) -> str:
    """The rows of the processes' JSON lines, the most collector time first."""
    rows = sorted((json.loads(line) for line in lines if line.strip()), key=_total, reverse=True)
    out = ["seconds (gen 0 / 1 / 2) | collections (0 / 1 / 2) | freed | process"]
    for row in rows:
        s, c = row["seconds"], row["collections"]
        out.append(
            f"{_total(row):.2f} ({s[0]:.2f} / {s[1]:.2f} / {s[2]:.2f}) | "
            f"{c[0]} / {c[1]} / {c[2]} | {sum(row['freed'])} | "
            f"{' '.join(row['argv'])} (pid {row['pid']})"
        )
    return "\n".join(out)


def _total(row: dict[str, object]) -> float:
    seconds = row["seconds"]
    assert isinstance(seconds, list)
    return float(sum(seconds))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        times = Path(folder) / "gc_times.jsonl"
        times.touch()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), env.get("PYTHONPATH")]))
        env["IMMUNREG_GC_TIMES"] = str(times)
        code = subprocess.run(args, env=env, check=False).returncode
        print(table(times.read_text().splitlines()))
    return code


if __name__ == "__main__":
    sys.exit(main())
