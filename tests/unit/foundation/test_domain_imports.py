"""Every service's domain.py is pure: importing it loads no database, HTTP or Kafka client.

So are the pure companions the service guide names (rules.py, stock.py, signin.py,
templates.py, allocation.py).

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
PURE_COMPANIONS = sorted(
    f"{path.parent.name}.{path.stem}"
    for name in ("rules.py", "stock.py", "signin.py", "templates.py", "allocation.py")
    for path in (ROOT / "services").glob(f"*/{name}")
)
# The I/O a pure domain must not drag in: PostgreSQL, HTTP, Kafka, metrics.
FORBIDDEN = ("asyncpg", "aiohttp", "aiokafka", "prometheus_client")

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in sys.argv[2:])))
"""


def test_every_service_has_a_domain() -> None:
    assert len(DOMAINS) >= 6


def _io_libraries_loaded_by(module: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *FORBIDDEN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("service", DOMAINS)
def test_a_domain_imports_no_io_library(service: str) -> None:
    assert _io_libraries_loaded_by(f"services.{service}.domain") == [], service


@pytest.mark.parametrize("module", PURE_COMPANIONS)
def test_a_pure_companion_imports_no_io_library(module: str) -> None:
    assert _io_libraries_loaded_by(f"services.{module}") == [], module
