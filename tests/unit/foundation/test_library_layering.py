"""Dependencies flow one way: the services use the library, never the reverse.

The library finds the services through what they declare (`immunreg.discovery`);
an import of `services.*` under libs/ (a statement, or a module name in a string
handed to importlib) would tie it to the apps above it again.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIBS = Path(__file__).resolve().parents[3] / "libs"


def _is_services(module: str) -> bool:
    return module == "services" or module.startswith("services.")


def services_imports(source: str) -> list[str]:
    """The module names in `source` that name the services package, in order."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("services.")
        ):
            # "services.x.app" for importlib; an f-string's literal part is a Constant too.
            # The bare package name is allowed: immunreg.discovery declares where services live.
            found.append(node.value)
    return [name for name in found if _is_services(name)]


def test_the_library_imports_no_service() -> None:
    offending = {
        str(path.relative_to(LIBS)): hits
        for path in sorted(LIBS.rglob("*.py"))
        if (hits := services_imports(path.read_text()))
    }
    assert offending == {}


def test_the_check_sees_every_way_of_importing() -> None:
    # Without this, a check that found nothing would prove nothing.
    source = (
        "import services.booking.app\n"
        "from services import booking\n"
        "from .services import local_module\n"
        "importlib.import_module(f'services.{name}.demo')\n"
        "text = 'the services are up'\n"
    )
    assert services_imports(source) == ["services.booking.app", "services", "services."]
