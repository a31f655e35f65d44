"""Operations on a running deployment: consumer groups, backups.

    immunreg consumers status SERVICE [--topic T] [--json]
    immunreg consumers reset SERVICE --topic T (--to-beginning | --to-end | --to-time ISO
                                                | --to-offset N --partition P) [--forget-processed]
    immunreg backup SERVICE --out FILE
    immunreg restore SERVICE FILE

SERVICE names the service whose settings say where its schema is (DATABASE_URL, DB_SCHEMA,
KAFKA_BOOTSTRAP_SERVERS, each also as <SERVICE>_<NAME>): its consumer group is its schema.
docs/operations.md is the runbook; dead letters are `immunreg dlq` (cli_dlq.py).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from immunreg.cli_tables import aligned
from immunreg.messaging.positions import GroupStatus, Moved


def add_commands(sub: Any) -> None:
    """Add `consumers status|reset`, `backup` and `restore` to the `immunreg` command."""
    consumers = sub.add_parser("consumers", help="consumer groups: status and lag, move them")
    actions = consumers.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", help="members, and position and lag per partition")
    status.add_argument("service")
    status.add_argument("--topic", action="append", default=[], help="also this topic")
    status.add_argument("--json", action="store_true", help="JSON for scripts")
    status.set_defaults(func=_status)

    reset = actions.add_parser(
        "reset", help="move the group's positions (every replica of the service stopped)"
    )
    reset.add_argument("service")
    reset.add_argument("--topic", required=True)
    reset.add_argument("--partition", type=int, help="only this partition")
    where = reset.add_mutually_exclusive_group(required=True)
    where.add_argument("--to-beginning", action="store_true", help="replay the whole topic")
    where.add_argument("--to-end", action="store_true", help="skip everything not applied yet")
    where.add_argument("--to-time", type=datetime.fromisoformat, help="first offset at or after")
    where.add_argument("--to-offset", type=int, help="this offset (needs --partition)")
    reset.add_argument(
        "--forget-processed",
        action="store_true",
        help="apply replayed events again (read models rebuilt from scratch only)",
    )
    reset.set_defaults(func=_reset)

    backup = sub.add_parser("backup", help="pg_dump a service's schema to a file")
    backup.add_argument("service")
    backup.add_argument("--out", type=Path, required=True, help="the archive to write")
    backup.set_defaults(func=_backup)

    restore = sub.add_parser(
        "restore", help="replace a service's schema with a backup (the service stopped)"
    )
    restore.add_argument("service")
    restore.add_argument("archive", type=Path)
    restore.set_defaults(func=_restore)


def _topics(service: str, extra: list[str]) -> list[str]:
    """The topics the service consumes (when it exists in this checkout) and `extra`."""
    from immunreg.discovery import available_services, load_service

    topics = list(extra)
    if service in available_services():
        reactions = load_service(service).reactions
        topics += reactions.topics if reactions else []
    return topics


def _status(args: argparse.Namespace) -> int:
    import asyncio

    from immunreg.config import Settings
    from immunreg.messaging.positions import group_status

    settings = Settings.from_env(args.service)
    status = asyncio.run(
        group_status(
            settings.database_url,
            settings.db_schema,
            settings.kafka_bootstrap,
            _topics(args.service, args.topic),
        )
    )
    if args.json:
        sys.stdout.write(msgspec.json.encode(status).decode() + "\n")
    else:
        sys.stdout.write(status_table(status))
    return 0


def _reset(args: argparse.Namespace) -> int:
    import asyncio

    from immunreg.config import Settings
    from immunreg.messaging.positions import reset_positions

    settings = Settings.from_env(args.service)
    to: int | datetime | str
    if args.to_beginning:
        to = "beginning"
    elif args.to_end:
        to = "end"
    elif args.to_time is not None:
        to = args.to_time
    else:
        to = args.to_offset
    moved = asyncio.run(
        reset_positions(
            settings.database_url,
            settings.db_schema,
            settings.kafka_bootstrap,
            args.topic,
            to=to,
            partition=args.partition,
            forget_processed=args.forget_processed,
        )
    )
    sys.stdout.write(moved_table(moved))
    if args.forget_processed:
        sys.stdout.write(f"forgot the event ids {settings.db_schema} had processed\n")
    return 0


def _backup(args: argparse.Namespace) -> int:
    from immunreg.config import Settings
    from immunreg.eventstore.backup import back_up

    settings = Settings.from_env(args.service)
    back_up(settings.database_url, settings.db_schema, args.out)
    sys.stdout.write(f"{settings.db_schema} backed up to {args.out}\n")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from immunreg.config import Settings
    from immunreg.eventstore.backup import restore

    settings = Settings.from_env(args.service)
    restore(settings.database_url, settings.db_schema, args.archive)
    sys.stdout.write(
        f"{settings.db_schema} restored from {args.archive}; start the service: "
        "its consumers catch up from Kafka\n"
    )
    return 0


def status_table(status: GroupStatus) -> str:
    """A group's members and positions, aligned for a terminal."""
    lines = [f"group {status.group}: {status.state}, {status.members} member(s), lag {status.lag}"]
    header = ("TOPIC", "PARTITION", "NEXT OFFSET", "END OFFSET", "LAG", "UPDATED AT")
    rows = [
        (
            p.topic,
            str(p.partition),
            "-" if p.next_offset is None else str(p.next_offset),
            str(p.end_offset),
            str(p.lag),
            (p.updated_at or "-")[:19],
        )
        for p in status.partitions
    ]
    return "\n".join([*lines, *aligned([header, *rows])]) + "\n"


def moved_table(moved: list[Moved]) -> str:
    """Each partition's position before and after a reset."""
    header = ("TOPIC", "PARTITION", "BEFORE", "AFTER")
    rows = [
        (m.topic, str(m.partition), "-" if m.before is None else str(m.before), str(m.after))
        for m in moved
    ]
    return "\n".join(aligned([header, *rows])) + "\n"
