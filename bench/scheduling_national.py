"""The scheduling target as the performance issue states it: 1,000,000 waiting citizens
booked and committed through the service, as a background run, in <= 60 s.

Run with `.venv/bin/python -m bench.scheduling_national` (also in `make bench`, after
bench.scheduling's 100,000). It is bench.scheduling at 1,000,000 waiting (643,861 of
them booked: the synthetic country's stock runs out first), recorded under
"booking_scheduling_national" so that the 100,000 run's figures stay beside it. About
a minute and a half on the 2-core machine: seeding 1,000,000 citizens (~20 s), the
same-run baseline (the pure planner on what the run loads, ~12 s), the run (40-60 s),
the checks. `--quick` skips it: a national run is the point of this one.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench import scheduling
from bench.common import progress

SECTION = "booking_scheduling_national"
CITIZENS = 1_000_000


def main(argv: Sequence[str] | None = None) -> int:
    """The 1,000,000-waiting run through the service, into its own section."""
    if "--quick" in (argv or ()):
        progress("the national scheduling run is skipped with --quick")
        return 0
    return scheduling.main(["--citizens", str(CITIZENS), "--section", SECTION])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
