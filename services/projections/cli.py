"""`immunreg projections rebuild`: replay every topic into a new read model, then swap it in.

Settings as for `immunreg serve projections` (PROJECTIONS_DB_SCHEMA, DATABASE_URL,
KAFKA_BOOTSTRAP_SERVERS, PROJECTIONS_SOURCE_PREFIX). A running service follows
the swap within a second; without one, the next start reads the new model.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_commands(sub: Any) -> None:
    """Add `projections rebuild` to the `immunreg` command."""
    projections = sub.add_parser("projections", help="the projections' read models")
    actions = projections.add_subparsers(dest="action", required=True)
    rebuild = actions.add_parser(
        "rebuild",
        help="replay every topic from offset 0 into a new read model beside the live one, "
        "then swap it in",
    )
    rebuild.add_argument(
        "--keep-old", action="store_true", help="keep the retired model's schema (default: drop)"
    )
    rebuild.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds between the swap and dropping the retired model (default 10)",
    )
    rebuild.add_argument(
        "--batch-size", type=int, default=5000, help="records per poll (default 5000)"
    )
    rebuild.add_argument(
        "--processes",
        type=int,
        default=2,
        help="processes replaying, each a member of the new model's group (default 2; "
        "a replay's Python runs on one core per process)",
    )
    rebuild.set_defaults(func=_rebuild)


def _rebuild(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from immunreg.config import Settings, setting

    from .handlers import Sources
    from .rebuild import rebuild

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env("projections")
    sources = Sources.prefixed(setting("SOURCE_PREFIX", "projections") or "")

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r[rebuild] {done:,} / {total:,} events")
            sys.stderr.flush()

    report = asyncio.run(
        rebuild(
            settings.database_url,
            settings.kafka_bootstrap,
            settings.db_schema,
            sources,
            batch_size=args.batch_size,
            processes=args.processes,
            grace=args.grace,
            keep_old=args.keep_old,
            partitions=settings.kafka_partitions,
            progress=progress,
        )
    )
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(
        f"read model {report.schema} is active"
        + (
            f" (retired {report.retired}{', dropped' if report.dropped else ''})"
            if report.retired
            else ""
        )
        + f": {report.events:,} events replayed in {report.seconds:.1f}s "
        f"({report.events_per_second:,.0f} events/s), swapped after {report.total_seconds:.1f}s"
    )
    return 0
