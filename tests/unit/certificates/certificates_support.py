"""Helpers for the certificates unit tests (a module of its own: tests/unit is no package)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from immunreg.reference.vaccines import vaccine_catalog
from services.certificates.hcert import Holder, Vaccination, build_payload
from services.certificates.keys import TrustedKey
from services.certificates.uvci import new_uvci

DATA = Path(__file__).parents[2] / "data" / "dcc"
# The tests' clock. The signing keys they make are valid from a few minutes before it
# (conftest's `signer`), since a verifier refuses a certificate issued outside its
# signer's validity.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def payload(uvci: str | None = None, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "product": vaccine_catalog()["EU/1/20/1528"],
        "dose_number": 1,
        "total_doses": 2,
        "vaccination_date": date(2021, 6, 1),
        "country": "RS",
        "issuer": "Ministry of Health of the Republic of Serbia",
        "uvci": uvci or new_uvci(),
    }
    values.update(changes)
    holder = Holder(family_name="Petrović", given_name="Jelena", birth_date=date(1985, 4, 12))
    return build_payload(holder, Vaccination(**values))


def dcc_test(relative: str) -> dict[str, Any]:
    """One EU DCC test file from tests/data/dcc."""
    loaded: dict[str, Any] = json.loads((DATA / relative).read_text())
    return loaded


def signer_of(test: dict[str, Any]) -> TrustedKey:
    """The test file's DSC, trusted."""
    der = base64.b64decode(test["TESTCTX"]["CERTIFICATE"])
    return TrustedKey.of(x509.load_der_x509_certificate(der), "trusted")


def clock_of(test: dict[str, Any]) -> datetime:
    """The test file's validation clock (NL files write it without a zone: UTC)."""
    moment = datetime.fromisoformat(test["TESTCTX"]["VALIDATIONCLOCK"].replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
