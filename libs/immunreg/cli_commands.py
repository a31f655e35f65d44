"""Further `immunreg` subcommands: services, development tokens, projections rebuild,
dead letters, consumer groups and backups."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from immunreg.discovery import available_services, load_service
from immunreg.paths import keys_dir, state_dir


def _serve(args: argparse.Namespace) -> int:
    from immunreg.config import Settings
    from immunreg.http.app import create_app
    from immunreg.http.shutdown import run_app

    settings = Settings.from_env(args.service)
    run_app(create_app(load_service(args.service), settings), settings)
    return 0


def _mailbox(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from immunreg.localinfra.mailbox import serve_forever

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever())
    return 0


def _portal(args: argparse.Namespace) -> int:
    from aiohttp import web

    from immunreg.config import portal_port, setting
    from immunreg.eventloop import new_event_loop
    from immunreg.portal import create_portal

    host = setting("PORTAL_HOST", default="127.0.0.1") or "127.0.0.1"
    port = portal_port()
    web.run_app(
        create_portal(), host=host, port=port, print=None, access_log=None, loop=new_event_loop()
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    from immunreg.config import PRODUCTION, environment, positive_number, setting
    from immunreg.http.auth import (
        DEV_AUDIENCE,
        DEV_ISSUER,
        MAX_LIFETIME,
        Role,
        ensure_dev_keys,
        issue_token,
    )

    if environment() == PRODUCTION:
        raise RuntimeError("`immunreg token` signs with a development key; not in production mode")
    configured = setting("JWT_MAX_LIFETIME")
    max_lifetime = (
        timedelta(seconds=positive_number("JWT_MAX_LIFETIME", configured, float))
        if configured
        else MAX_LIFETIME
    )
    private, _ = ensure_dev_keys(keys_dir())
    try:
        token = issue_token(
            private.read_bytes(),
            Role(args.role),
            subject=args.subject,
            site_id=args.site,
            citizen_id=args.citizen,
            ttl=timedelta(hours=args.hours),
            max_lifetime=max_lifetime,
            issuer=setting("JWT_ISSUER") or DEV_ISSUER,
            audience=setting("JWT_AUDIENCE") or DEV_AUDIENCE,
        )
    except ValueError as e:
        raise RuntimeError(str(e)) from None
    sys.stdout.write(token + "\n")
    return 0


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM reached `immunreg run`."""


def _run(args: argparse.Namespace) -> int:
    import signal
    import time

    from immunreg import localinfra
    from immunreg.demo import load_demo_data
    from immunreg.http.auth import ensure_dev_keys
    from immunreg.localinfra._proc import log, step
    from immunreg.localinfra.services import (
        ServiceProcess,
        start_mailbox,
        start_portal,
        start_services,
        wait_ready,
    )

    def interrupt(signum: int, frame: object) -> None:
        # Raised wherever the main thread is (a start-up step, the demo, the watch
        # loop), so a stop never waits for a slow step to finish first.
        raise _Interrupted

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    processes: list[ServiceProcess] = []
    status = 0
    try:
        endpoints = localinfra.up()
        ensure_dev_keys(keys_dir())
        names = available_services()
        # No load balancer watches a laptop's /readyz: on Ctrl-C, skip the pause that
        # gives one time to notice (unless asked for), so the whole stop fits in 15 s.
        service_env = {"SHUTDOWN_DRAIN_DELAY": os.environ.get("SHUTDOWN_DRAIN_DELAY", "0")}
        with step("starting the local mailbox (SMTP and SMS gateway)"):
            mailbox = start_mailbox()
            processes.append(mailbox)
        with step("starting the services"):
            processes += start_services(names, {**endpoints, **service_env}, replicas=args.replicas)
        with step("starting the citizens' portal"):
            portal = start_portal()
            processes.append(portal)
        with step("waiting for the services to be ready"):
            wait_ready(processes)
        if not args.no_demo:
            with step("loading the demo data"):
                load_demo_data({p.name: p.url for p in processes if p not in (mailbox, portal)})
        print("\nimmunreg is running:")
        for key, value in endpoints.items():
            print(f"  {key:<28} {value}")
        for proc in processes:
            if proc not in (mailbox, portal):
                print(f"  {proc.name:<28} {proc.url}  (API: {proc.url}/openapi.json)")
        if len(processes) == 2:  # the mailbox and the portal only
            print("  (no services exist yet in this checkout)")
        print(f"  {'mail and SMS sent':<28} {mailbox.url}/  (JSON: {mailbox.url}/v1/messages)")
        print(f"  {'citizens portal':<28} {portal.url}/  (sign in with a code from the mailbox)")
        print(f"  logs                         {state_dir() / 'logs'}")
        print("  a token: .venv/bin/immunreg token --role admin")
        print("Ctrl-C (or `make stop`) stops everything.", flush=True)
        while True:
            for proc in processes:
                if proc.process.poll() is not None:
                    print(f"{proc.name} exited ({proc.process.returncode}); see {proc.logfile}")
                    raise _Interrupted
            time.sleep(0.5)
    except _Interrupted:
        log("stopping (Ctrl-C)")
    except RuntimeError as exc:
        print(f"immunreg run: {exc}", file=sys.stderr)
        log("stopping what this run started")
        status = 1
    finally:
        # A second Ctrl-C must not cut the stop short and leave servers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_everything(processes, keep_infra=args.keep_infra)
    return status


def _stop_everything(processes: list[Any] | None, *, keep_infra: bool = False) -> None:
    """Stop the services, then (unless kept) Kafka and PostgreSQL; return when their ports
    are free. Services go first: they flush their outbox and commit while the servers run."""
    import time

    from immunreg import localinfra
    from immunreg.localinfra._proc import log, wait_ports_free
    from immunreg.localinfra.services import stop_services

    started = time.monotonic()
    ports = stop_services(processes)
    if not keep_infra:
        ports += localinfra.down()
    taken = wait_ports_free(ports, seconds=10)
    if taken:
        log(f"still listening after the stop: ports {taken}")
    log(f"stopped in {time.monotonic() - started:.1f}s")


def _stop(args: argparse.Namespace) -> int:
    _stop_everything(None)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def register_commands(sub: Any, argv: Sequence[str]) -> None:
    """Add the subcommands that live outside cli.py, and those the services declare."""
    serve = sub.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service")
    serve.set_defaults(func=_serve)

    run = sub.add_parser("run", help="start PostgreSQL, Kafka and every service; Ctrl-C stops")
    run.add_argument("--no-demo", action="store_true", help="do not load demo data")
    run.add_argument("--keep-infra", action="store_true", help="leave Kafka and PostgreSQL up")
    run.add_argument(
        "--replicas",
        type=_positive,
        default=1,
        help="processes per service, each on a port of its own (the first's + 100 per replica)",
    )
    run.set_defaults(func=_run)

    mailbox = sub.add_parser(
        "mailbox", help="a local SMTP server and SMS gateway that keep every message"
    )
    mailbox.set_defaults(func=_mailbox)

    portal = sub.add_parser(
        "portal", help="serve the citizens' web client (static files; port 8080 + offset)"
    )
    portal.set_defaults(func=_portal)

    stop = sub.add_parser("stop", help="stop services, Kafka and PostgreSQL started here")
    stop.set_defaults(func=_stop)

    token = sub.add_parser("token", help="print a development bearer token")
    token.add_argument(
        "--role",
        required=True,
        choices=["citizen", "site_staff", "logistics", "public_health", "admin"],
    )
    token.add_argument("--site", help="site id (site_staff)")
    token.add_argument("--citizen", help="citizen id (citizen)")
    token.add_argument("--subject", help="who the token is for (default: derived)")
    token.add_argument(
        "--hours", type=float, default=12.0, help="lifetime in hours (at most JWT_MAX_LIFETIME)"
    )
    token.set_defaults(func=_token)

    from immunreg.cli_dlq import add_commands as add_dlq_commands

    add_dlq_commands(sub)
    from immunreg.audit import add_commands as add_audit_commands

    add_audit_commands(sub)
    from immunreg.cli_ops import add_commands as add_ops_commands

    add_ops_commands(sub)
    _add_service_commands(sub, argv)


def _add_service_commands(sub: Any, argv: Sequence[str]) -> None:
    """Add the subcommands the services declare (`Service.commands`).

    Importing a service costs about a quarter of a second, and every service process
    starts through this parser (`immunreg serve`), so no service is imported for the
    library's own commands, only the named one for `immunreg <service> ...`, and
    all of them when the command is unknown or missing (so help and errors list all).
    """
    command = next((word for word in argv if not word.startswith("-")), None)
    if command in sub.choices:
        return
    names = available_services()
    for name in [command] if command in names else names:
        declared = load_service(name).commands
        if declared is not None:
            declared(sub)
