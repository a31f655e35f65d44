"""What a service is made of: its API, its tables, its reactions, its jobs.

Each service module builds one `Service`; `immunreg serve NAME` turns it into
a running process with `create_app`. The `Service` is also how a service offers
the `immunreg` command its subcommands and `make run` its demo data: the library
finds them here (see `immunreg.discovery`), never by importing the service.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from immunreg import audit
from immunreg.contracts.envelope import Context
from immunreg.http.api import Api
from immunreg.http.health import Health
from immunreg.messaging.reactions import Reactions

# A resource with start-up and shutdown, as aiohttp's cleanup contexts expect.
Resource = Callable[[web.Application], AsyncIterator[None]]
# A readiness check of the service's own (beyond database, Kafka and its consumers).
# It is taken to need Kafka: while Kafka is down its failure only degrades.
ReadinessCheck = Callable[[web.Application], Awaitable[bool | Health]]
# Adds a service's subcommands to `immunreg` (the argparse subparsers action).
# Name the subcommand after the service: `immunreg <name> ...` then imports only it.
Commands = Callable[["argparse._SubParsersAction[Any]"], None]
# Loads demo data over HTTP for `make run`: service name -> base URL in, one-line summary out.
DemoLoader = Callable[[dict[str, str]], str]


@dataclass
class Service:
    """One bounded context's process: routes, DDL, events it publishes and reacts to."""

    name: str
    api: Api
    publishes: Context | None = None
    schema_files: Sequence[Path] = ()
    reactions: Reactions | None = None
    resources: Sequence[Resource] = field(default_factory=tuple)
    extra_routes: Sequence[web.RouteDef] = field(default_factory=tuple)
    readiness: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    commands: Commands | None = None
    demo: DemoLoader | None = None
    citizen_at_site: audit.CitizenAtSite | None = None
    """Whether a citizen has an appointment or dose at a site, from the service's own
    read model: what site staff's linked reach (`Reach.LINKED`) asks of it."""

    def __post_init__(self) -> None:
        audit.declare_routes(self.api)

    @property
    def topics(self) -> list[str]:
        """Topics this service writes to or reads from (created at start if missing)."""
        from immunreg.contracts.topics import dlq_topic

        topics = [self.publishes.topic] if self.publishes else []
        if self.reactions:
            topics += self.reactions.topics
            topics += [dlq_topic(t) for t in self.reactions.topics]
        return topics
