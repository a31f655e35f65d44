"""The library's lowest modules import first, on their own, in a fresh interpreter.

immunreg.tasks imported immunreg.eventstore once, whose outbox signal imports
immunreg.tasks: a process whose first import was immunreg.tasks (or a module importing
it first, as immunreg.childprocess's users may) failed on the cycle. Within one test
process the order of imports hides such a cycle, so each is tried in a process of its own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

FIRST_IMPORTS = ["immunreg.tasks", "immunreg.childprocess", "immunreg.eventstore.signal"]


@pytest.mark.parametrize("module", FIRST_IMPORTS)
def test_the_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
