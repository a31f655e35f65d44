"""Further `immunreg` subcommands: services and development tokens."""

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
    from aiohttp import web

    from immunreg.config import Settings
    from immunreg.http.app import create_app

    settings = Settings.from_env(args.service)
    app = create_app(load_service(args.service), settings)
    web.run_app(app, host=settings.host, port=settings.port, print=None,
                handle_signals=True, shutdown_timeout=10)
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


def register_commands(sub: Any) -> None:
    """Add the subcommands that live outside cli.py."""
    serve = sub.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service")
    serve.set_defaults(func=_serve)

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
