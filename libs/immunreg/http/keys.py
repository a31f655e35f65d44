"""Typed application state shared by the HTTP kit and the app factory."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from immunreg.observability.metrics import Metrics

POOL_KEY = web.AppKey("pool", asyncpg.Pool)
"""The service's asyncpg pool (search_path set to the service's schema)."""

METRICS_KEY = web.AppKey("metrics", Metrics)
"""The service's Prometheus metrics."""
