"""Further `immunreg` subcommands: services, development tokens, projections rebuild."""

from __future__ import annotations

import argparse
import importlib
import sys
from datetime import timedelta
from typing import Any

from immunreg.paths import state_dir


def load_service(name: str) -> Any:
    """The `Service` object of services/<name>/app.py."""
    module = importlib.import_module(f"services.{name}.app")
    return module.service


def _serve(args: argparse.Namespace) -> int:
    from immunreg.config import Settings
    from immunreg.http.app import create_app
    from immunreg.http.shutdown import run_app

    settings = Settings.from_env(args.service)
    run_app(create_app(load_service(args.service), settings), settings)
    return 0


def _token(args: argparse.Namespace) -> int:
    from immunreg.http.auth import Role, ensure_dev_keys, issue_token

    private, _ = ensure_dev_keys(state_dir() / "keys")
    token = issue_token(
        private.read_bytes(),
        Role(args.role),
        subject=args.subject,
        site_id=args.site,
        citizen_id=args.citizen,
        ttl=timedelta(hours=args.hours),
    )
    sys.stdout.write(token + "\n")
    return 0


def _run(args: argparse.Namespace) -> int:
    import signal
    import time

    from immunreg import localinfra
    from immunreg.demo import load_demo_data
    from immunreg.http.auth import ensure_dev_keys
    from immunreg.localinfra.services import (
        available_services,
        start_services,
        stop_services,
        wait_ready,
    )

    endpoints = localinfra.up()
    ensure_dev_keys(state_dir() / "keys")
    names = available_services()
    processes = start_services(names, endpoints)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        wait_ready(processes)
        if not args.no_demo:
            load_demo_data({p.name: p.url for p in processes})
        print("\nimmunreg is running:")
        for key, value in endpoints.items():
            print(f"  {key:<28} {value}")
        for proc in processes:
            print(f"  {proc.name:<28} {proc.url}  (API: {proc.url}/openapi.json)")
        if not processes:
            print("  (no services exist yet in this checkout)")
        print(f"  logs                         {state_dir() / 'logs'}")
        print("  a token: .venv/bin/immunreg token --role admin")
        print("Ctrl-C (or `make stop`) stops everything.", flush=True)
        while not stopping:
            for proc in processes:
                if proc.process.poll() is not None:
                    print(f"{proc.name} exited ({proc.process.returncode}); see {proc.logfile}")
                    stopping = True
            time.sleep(0.5)
    finally:
        stop_services(processes)
        if not args.keep_infra:
            localinfra.down()
    return 0


def _stop(args: argparse.Namespace) -> int:
    from immunreg import localinfra
    from immunreg.localinfra.services import stop_services

    stop_services()
    localinfra.down()
    return 0


def register_commands(sub: Any) -> None:
    """Add the subcommands that live outside cli.py."""
    serve = sub.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service")
    serve.set_defaults(func=_serve)

    run = sub.add_parser("run", help="start PostgreSQL, Kafka and every service; Ctrl-C stops")
    run.add_argument("--no-demo", action="store_true", help="do not load demo data")
    run.add_argument("--keep-infra", action="store_true", help="leave Kafka and PostgreSQL up")
    run.set_defaults(func=_run)

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
    token.add_argument("--hours", type=float, default=12.0, help="lifetime in hours")
    token.set_defaults(func=_token)

    from services.projections.cli import add_commands as add_projections_commands

    add_projections_commands(sub)
