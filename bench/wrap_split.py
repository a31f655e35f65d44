"""What a pooled grant costs the request that carries it: a whole `wrap_key` against the
`PreparedWrap.finish` that is left once `prepare_wrap` ran ahead (in registration, when
it takes a batch of pooled keys).

Run with `.venv/bin/python -m bench.wrap_split [--wraps 2000] [--rounds 5]`; no stack
needed. Each round times, in turn, `wraps` whole wraps, `wraps` prepared halves and
`wraps` finishes, one key each; the rounds alternate so a busy machine weighs on every
kind alike. Figures (median and per-round microseconds per call) go to
bench/results.json under "wrap_split".
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

from bench.common import progress
from bench.results import record
from immunreg.contracts.registration import grant_context
from immunreg.sealing import PreparedWrap, new_data_key, new_holder_key_pair, prepare_wrap, wrap_key

SECTION = "wrap_split"


def _per_call_us(calls: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls * 1e6


def _round(wraps: int, public: bytes, data_key: bytes, context: bytes) -> dict[str, float]:
    """Microseconds per call of each kind, timed one kind after another."""
    whole = _per_call_us(wraps, lambda: wrap_key(public, data_key, context))
    prepared: list[PreparedWrap] = []
    ahead = _per_call_us(wraps, lambda: prepared.append(prepare_wrap(public)))
    halves = iter(prepared)
    finish = _per_call_us(wraps, lambda: next(halves).finish(data_key, context))
    return {"wrap_key": whole, "prepare_wrap": ahead, "finish": finish}


def main(argv: Sequence[str] | None = None) -> int:
    """Time the three and record them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wraps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    public = new_holder_key_pair()[1]
    data_key = new_data_key()
    context = grant_context("c-abcdefghijklmnopqrst", "certificates")
    rounds: dict[str, list[float]] = {"wrap_key": [], "prepare_wrap": [], "finish": []}
    for n in range(args.rounds):
        for kind, us in _round(args.wraps, public, data_key, context).items():
            rounds[kind].append(us)
        progress(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.1f} us" for k, v in rounds.items()))
    figures = {
        "wraps_per_round": args.wraps,
        "us_per_call_median": {k: round(statistics.median(v), 1) for k, v in rounds.items()},
        "us_per_call_rounds": {k: [round(x, 1) for x in v] for k, v in rounds.items()},
    }
    record(SECTION, figures)
    print(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
