"""What every benchmark shares: progress lines and percentiles.

Figures go to bench/results.json through `bench.results.record`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence


def progress(message: str) -> None:
    """A progress line on stderr, so a long benchmark shows where it is."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (q in 0..100)."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
