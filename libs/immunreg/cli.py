"""The `immunreg` command: local infrastructure, services, development tokens."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Command = Callable[[argparse.Namespace], int]


def _infra(args: argparse.Namespace) -> int:
    from immunreg import localinfra

    if args.action == "up":
        endpoints = localinfra.up()
        for key, value in endpoints.items():
            print(f"{key}={value}")
    elif args.action == "down":
        localinfra.down()
    else:
        for key, value in localinfra.status().items():
            print(f"{key}: {value}")
    return 0


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser for `argv`; subcommands register themselves here.

    `argv` only decides which services' own subcommands are loaded (see
    `register_commands`); the library's own are always there.
    """
    parser = argparse.ArgumentParser(prog="immunreg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    infra = sub.add_parser("infra", help="start, stop or show local PostgreSQL and Kafka")
    infra.add_argument("action", choices=["up", "down", "status"])
    infra.set_defaults(func=_infra)

    from immunreg.cli_commands import register_commands

    register_commands(sub, sys.argv[1:] if argv is None else argv)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser(argv).parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except RuntimeError as exc:
        # Set-up failures (a port taken, a server that did not start) explain themselves.
        print(f"immunreg: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
