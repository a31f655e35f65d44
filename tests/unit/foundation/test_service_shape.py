"""Every service has the rooms docs/SERVICE_GUIDE.md names, and no other.

The guide's table of extra modules is the source of truth: a module a service
adds without saying in the guide why its domain needs it fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
GUIDE = ROOT / "docs" / "SERVICE_GUIDE.md"
COMMON = {
    "__init__.py",
    "app.py",
    "handlers.py",
    "domain.py",
    "readmodel.py",
    "schemas.py",
    "schema.sql",
}
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "app.py").exists())


def extras_in_guide() -> dict[str, set[str]]:
    """The guide's `service | extra modules | why` table, as {service: {file, ...}}."""
    text = GUIDE.read_text()
    table = text.split("<!-- service extras: the shape test reads this table -->", 1)[1]
    extras: dict[str, set[str]] = {}
    for line in table.strip().splitlines()[2:]:
        if not line.startswith("|"):
            break
        service, files = (cell.strip() for cell in line.strip("|").split("|")[:2])
        extras[service] = set(re.findall(r"`([^`]+)`", files))
    return extras


def test_the_guide_lists_every_service() -> None:
    assert sorted(extras_in_guide()) == SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_has_the_common_files_and_only_the_listed_extras(service: str) -> None:
    folder = ROOT / "services" / service
    present = {p.name for p in folder.iterdir() if p.name != "__pycache__"}
    assert COMMON - present == set(), f"{service} lacks the common files"
    unlisted = present - COMMON - extras_in_guide()[service]
    assert unlisted == set(), f"{service} has modules the guide does not list"
    gone = extras_in_guide()[service] - present
    assert gone == set(), f"the guide lists modules {service} no longer has"
