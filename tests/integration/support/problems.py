"""The problem+json documents every service shares, as the integration tests expect them."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from aiohttp import ClientResponse

from immunreg.http.problems import PROBLEM_CONTENT_TYPE, Problem

# The shared 410 to the letter: a service that words its own (as three once did, each a
# little differently) fails the test that reads its answer.
CITIZEN_ERASED: dict[str, Any] = msgspec.to_builtins(Problem.citizen_erased().body)


async def assert_citizen_erased(response: ClientResponse) -> None:
    """`response` is the one 410 `citizen_erased` problem every service answers with."""
    assert response.status == 410, await response.text()
    assert response.content_type == PROBLEM_CONTENT_TYPE
    # (This module is not rewritten by pytest: the message says what came instead.)
    answered = json.loads(await response.text())
    assert answered == CITIZEN_ERASED, f"{answered} is not the shared {CITIZEN_ERASED}"
