"""Where benchmark figures go: one JSON file, one section per benchmark.

Each `record` replaces its own section and keeps every other one, so the
foundation benchmark and later service benchmarks share bench/results.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from immunreg.paths import local_env_file

RESULTS = Path(__file__).with_name("results.json")
KAFKA_VERSION = "4.4.0"


def database_url() -> str | None:
    """The DSN in the environment, else the one `immunreg infra up` last wrote."""
    if dsn := os.environ.get("DATABASE_URL"):
        return dsn
    env = local_env_file()
    if env.exists():
        for line in env.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip() == "DATABASE_URL" and value.strip():
                return value.strip()
    return None


def postgres_version(dsn: str) -> str:
    """The server's `server_version`; safe to call from inside a running event loop."""

    async def fetch() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, fetch()).result(timeout=30)


def machine(postgres: str | None = None) -> dict[str, Any]:
    """What the figures were measured on."""
    if postgres is None:
        dsn = database_url()
        try:
            postgres = postgres_version(dsn) if dsn else "unknown"
        except Exception:  # the figures still count without it
            postgres = "unknown"
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": postgres,
        "kafka": KAFKA_VERSION,
    }


def record(
    section: str,
    figures: dict[str, Any],
    *,
    postgres: str | None = None,
    path: Path = RESULTS,
    part: str | None = None,
    keep: Sequence[str] = (),
) -> None:
    """Merge `{section: figures + measured_at + machine}` into the results file; with
    `part`, into `{section: {part: ...}}`, the rest of the section as it was; `keep`
    names the parts of the old section a new one keeps (measured by another command)."""
    results: dict[str, Any] = {}
    if path.exists():
        loaded = json.loads(path.read_text() or "{}")
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        results = loaded
    entry = {
        **figures,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(postgres),
    }
    old = results.get(section)
    old = old if isinstance(old, dict) else {}
    if part is None:
        results[section] = {**{k: old[k] for k in keep if k in old}, **entry}
    else:
        results[section] = {**old, part: entry}
    text = json.dumps(results, indent=2, sort_keys=True) + "\n"
    # Write then rename, so an interrupted run never leaves half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
