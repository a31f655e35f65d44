"""`immunreg dlq list|replay <topic>`: inspect dead letters and replay them after a fix.

Reads and writes Kafka only (KAFKA_BOOTSTRAP_SERVERS, or what `immunreg infra
up` wrote); see immunreg.messaging.dead_letters for why a replay is exactly once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from immunreg.cli_tables import aligned
from immunreg.messaging.dead_letters import DeadLetter, ReplayReport

REASON_WIDTH = 60


def add_commands(sub: Any) -> None:
    """Add `dlq list` and `dlq replay` to the `immunreg` command."""
    dlq = sub.add_parser("dlq", help="dead letters: list them, replay them after a fix")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="show every dead letter of a topic")
    replay = actions.add_parser(
        "replay", help="republish dead letters to their source topic, each exactly once"
    )
    for action in (listing, replay):
        action.add_argument("topic", help="the source topic, e.g. booking.events.v1")
        action.add_argument("--group", help="only what this consumer group dead-lettered")
        action.add_argument("--json", action="store_true", help="JSON for scripts")
        action.add_argument("--bootstrap", help="Kafka bootstrap servers (default: settings)")
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    listing.set_defaults(func=_list)
    replay.set_defaults(func=_replay)


def _bootstrap(args: argparse.Namespace) -> str:
    from immunreg.config import setting

    bootstrap = args.bootstrap or setting("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set and `immunreg infra up` has not run")
    return bootstrap


def _list(args: argparse.Namespace) -> int:
    import asyncio

    from immunreg.messaging.dead_letters import list_dead_letters

    letters = asyncio.run(list_dead_letters(_bootstrap(args), args.topic, group=args.group))
    if args.json:
        sys.stdout.write(msgspec.json.encode(letters).decode() + "\n")
    else:
        sys.stdout.write(table(letters))
    return 0


def _replay(args: argparse.Namespace) -> int:
    import asyncio

    from immunreg.messaging.dead_letters import replay_dead_letters

    report = asyncio.run(
        replay_dead_letters(_bootstrap(args), args.topic, group=args.group, dry_run=args.dry_run)
    )
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        sys.stdout.write(summary(report))
    return 0


def table(letters: list[DeadLetter]) -> str:
    """Dead letters as aligned columns, one line each, for a terminal."""
    if not letters:
        return "no dead letters\n"
    header = ("SOURCE", "GROUP", "TYPE", "EVENT ID", "STREAM", "FAILED AT", "REPLAYED", "REASON")
    rows = [
        (
            f"{d.source_topic}[{d.source_partition}]@{d.source_offset}",
            d.group,
            d.event_type or "(undecodable)",
            d.event_id or "-",
            d.stream_id or "-",
            d.failed_at[:19],
            (d.replayed_at or "no")[:19],
            _shorten(d.reason),
        )
        for d in letters
    ]
    return "\n".join(aligned([header, *rows])) + "\n"


def summary(report: ReplayReport) -> str:
    """What a replay did, in a few lines."""
    verb = "would replay" if report.dry_run else "replayed"
    lines = [f"{verb} {len(report.replayed)} dead letter(s) to {report.topic}"]
    lines += [
        f"  {d.event_type} {d.event_id} (stream {d.stream_id}, group {d.group})"
        for d in report.replayed
    ]
    if report.already_replayed:
        lines.append(f"{report.already_replayed} replayed before: left alone")
    if report.not_replayable:
        lines.append(f"{len(report.not_replayable)} not replayable (undecodable envelope):")
        lines += [
            f"  {d.source_topic}[{d.source_partition}]@{d.source_offset}: {_shorten(d.reason)}"
            for d in report.not_replayable
        ]
    return "\n".join(lines) + "\n"


def _shorten(reason: str) -> str:
    one_line = " ".join(reason.split())
    return one_line if len(one_line) <= REASON_WIDTH else one_line[: REASON_WIDTH - 1] + "…"
