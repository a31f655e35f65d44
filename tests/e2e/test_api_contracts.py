"""Every service fuzzed against its own OpenAPI document with Schemathesis.

Thousands of generated requests, valid and invalid, per service: none may get a 5xx, a
status code the document does not list, a body that does not match the documented
schema, or a wrong content type. Errors must be problem+json.

`positive_data_acceptance` is left out on purpose: the documents describe shapes, while
some rules (a JMBG's checksum, a municipality code from the census list, a date in the
future) are the domain's, so a schema-valid body may rightly get a 422.

The fuzz creates random citizens, sites and lots, so it runs after every other test
that uses the e2e stack (see `pytest_collection_modifyitems` in tests/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Stack

pytestmark = pytest.mark.fuzz

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# A fixed seed: a failure here is reproducible, and CI does not flake on a new sample.
SEED = "20261123"


@pytest.mark.parametrize(
    "service",
    ["registration", "booking", "inventory", "administration", "certificates", "projections"],
)
def test_every_operation_answers_as_its_openapi_document_says(
    stack: Stack, service: str, tmp_path: Path
) -> None:
    if service not in stack.urls:
        pytest.skip(f"{service} does not exist")
    url = stack.urls[service]
    token = stack.token("admin")["Authorization"]
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--no-color",
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: {token}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "40",
            "--seed",
            SEED,
            "--generation-database",
            "none",
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--warnings",
            "off",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-12_000:] + result.stderr[-2_000:]
    assert "generated" in result.stdout, result.stdout[-2_000:]
