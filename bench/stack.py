"""A fresh stack of services for one benchmark run: its own processes, schemas and topics.

Every benchmark that drives the services as a user meets them starts one the same way
and removes it the same way (processes stopped, schemas dropped, topics deleted).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from immunreg.config import local_port
from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE
from immunreg.discovery import available_services
from immunreg.localinfra.services import IsolatedStack


@contextlib.contextmanager
def fresh_stack(
    endpoints: dict[str, str],
    prefix: str,
    port_variable: str,
    default_port: int,
    *,
    env: dict[str, str] | None = None,
    names: list[str] | None = None,
) -> Iterator[tuple[IsolatedStack, str]]:
    """Start `names` (default: every service) with `env` added, on the port base the
    `port_variable` setting gives (else `default_port`), under a new run name
    `<prefix>_<hex>` (its schemas and topic namespace: `IsolatedStack`); yield (stack, run
    name); then stop the services, drop their schemas and delete the run's topics."""
    run = f"{prefix}_{uuid.uuid4().hex[:8]}"
    stack = IsolatedStack.start(
        {**endpoints, **(env or {})},
        names if names is not None else available_services(),
        local_port(port_variable, default_port),
        run,
    )
    # This process's own clients (counting messages back, producing load) use the run's
    # topics too, for as long as the run lasts.
    previous = os.environ.get(TOPIC_NAMESPACE_VARIABLE)
    os.environ[TOPIC_NAMESPACE_VARIABLE] = stack.namespace
    try:
        yield stack, run
    finally:
        stack.stop()
        if previous is None:
            os.environ.pop(TOPIC_NAMESPACE_VARIABLE, None)
        else:
            os.environ[TOPIC_NAMESPACE_VARIABLE] = previous
