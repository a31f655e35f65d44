"""Finding the services: the library never imports one by name.

Each service declares itself in `<SERVICES_PACKAGE>/<name>/app.py` as a `Service`
named `service` (with its CLI commands and demo loader, if it has any); the
library lists the folders that hold such a module and reads that declaration.
This is the one place that says where the services live.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from immunreg.config import DEFAULT_PORTS
from immunreg.paths import REPO_ROOT

if TYPE_CHECKING:
    from immunreg.service import Service

# The package beside libs/ whose sub-packages are the services.
SERVICES_PACKAGE = "services"


def available_services() -> list[str]:
    """Services that exist in this checkout, in port order."""
    folder = REPO_ROOT / SERVICES_PACKAGE
    return [name for name in DEFAULT_PORTS if (folder / name / "app.py").exists()]


def load_service(name: str) -> Service:
    """The `Service` a service declares in its app module (importing the module)."""
    module = importlib.import_module(f"{SERVICES_PACKAGE}.{name}.app")
    service: Service = module.service
    return service
