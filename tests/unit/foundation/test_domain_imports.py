"""Every service's domain.py is pure: importing it loads no database, HTTP or Kafka client.

Each import runs in a fresh interpreter, so what another test imported cannot
hide a dependency (or invent one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOMAINS = sorted(path.parent.name for path in (ROOT / "services").glob("*/domain.py"))
# The I/O a pure domain must not drag in: PostgreSQL, HTTP, Kafka, metrics.
FORBIDDEN = ("asyncpg", "aiohttp", "aiokafka", "prometheus_client")

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in sys.argv[2:])))
"""


def test_every_service_has_a_domain() -> None:
    assert len(DOMAINS) >= 6


@pytest.mark.parametrize("service", DOMAINS)
def test_a_domain_imports_no_io_library(service: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, f"services.{service}.domain", *FORBIDDEN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [], f"services/{service}/domain.py loads them"
