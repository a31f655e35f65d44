"""`make bench`: every benchmark that exists, one after another.

Each module `bench/<name>.py` has `main(argv) -> int` and records its figures
in bench/results.json under its own section. Extra arguments (e.g. --quick)
are passed to each.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

# Foundation first: its baselines put the service figures in proportion.
ORDER = (
    "foundation",
    "eventsourcing_compare",
    "booking",
    "scheduling",
    "scheduling_national",
    "supply",
    "administration",
    "http_rates",
    "idle_cpu",
    "floor",
    "floor_scheduling",
    "certificates",
    "coverage",
    "projections",
)


def main(argv: list[str]) -> int:
    failed = []
    for name in ORDER:
        if importlib.util.find_spec(f"bench.{name}") is None:
            continue
        print(f"== bench.{name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        if module.main(argv) != 0:
            failed.append(name)
    # Every headline figure beside its same-run baseline and its target.
    from bench import summary

    print("== summary (bench/summary.md)", flush=True)
    summary.main([])
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
