"""Rate limits for public routes: a token bucket per client address and route.

Each bucket holds up to `burst` requests and refills at `per_minute`; a request
that finds it empty gets 429 with `Retry-After` (whole seconds until a token is
back). Only anonymous requests are limited: a caller with a valid token is
accountable by it, and the routes' roles already decide what it may do.

Buckets live in the process (one service replica, one set of buckets), so the
limit a client meets is per replica; the least recently seen address is
forgotten once `max_clients` are tracked, which at worst gives it a fresh burst.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from immunreg.http.problems import Problem

Clock = Callable[[], float]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by (route, client address), on an injectable clock."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self._rate = per_minute / 60.0  # tokens per second
        self._burst = float(burst)
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def take(self, route: str, client: str) -> float | None:
        """Spend one token of this client's bucket: None if there was one, else the
        seconds until there will be."""
        now = self._clock()
        key = (route, client)
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(self._burst, now)
        else:
            # A clock that went backwards refills nothing rather than draining.
            elapsed = max(now - bucket.updated, 0.0)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.updated = now
        self._buckets[key] = bucket
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate


RATE_LIMITER_KEY = web.AppKey("rate_limiter", RateLimiter)


def limit_anonymous(request: web.Request, route: str, anonymous: bool) -> None:
    """Refuse an anonymous request over its address's limit (Problem 429, Retry-After)."""
    if not anonymous:
        return
    limiter = request.app.get(RATE_LIMITER_KEY)
    if limiter is None:
        # Never silently unlimited: a public route marked limited needs the app's limiter.
        raise RuntimeError(f"{route} is rate limited but the app has no RateLimiter")
    refuse_over_limit(limiter, route, request.remote or "unknown", "your address")


def refuse_over_limit(limiter: RateLimiter, route: str, client: str, whose: str) -> None:
    """Spend one of `client`'s tokens, or refuse (Problem 429 with Retry-After); `whose`
    names the bucket to the caller ("your address")."""
    wait = limiter.take(route, client)
    if wait is not None:
        seconds = max(math.ceil(wait), 1)
        raise Problem(
            429,
            f"too many requests from {whose}; retry after {seconds} s",
            code="rate_limited",
            headers={"Retry-After": str(seconds)},
        )
