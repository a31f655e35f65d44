"""Dose events as the tests build them: one record's fields, and the events that carry them.

Shared by the unit and integration tests (like tally.py: pytest's prepend mode makes this
folder an import root), so a test names only what its case is about and the rest of the
record is the same everywhere: a first dose of Comirnaty given at SITE-1 in Barajevo.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from immunreg.contracts.administration import DoseAdministered, DoseCorrected, DoseVoided

COMIRNATY = "EU/1/20/1528"
GIVEN_AT = datetime(2024, 3, 1, 10, tzinfo=UTC)
VOID_FIELDS = [
    f.name for f in msgspec.structs.fields(DoseVoided) if f.name not in ("reason", "details")
]


def dose_record(**changes: Any) -> dict[str, Any]:
    """The fields DoseAdministered and DoseCorrected both carry, with `changes` over them."""
    return {
        "dose_id": "d1",
        "citizen_id": "c1",
        "site_id": "SITE-1",
        "site_municipality_code": "70092",
        "citizen_municipality_code": "70092",
        "product_code": COMIRNATY,
        "lot_number": "LOT-1",
        "dose_number": 1,
        "series_length": 2,
        "series_complete": False,
        "booster": False,
        "administered_at": GIVEN_AT,
        "age_at_vaccination": 50,
        "sex": "female",
        **changes,
    }


def administered(**changes: Any) -> DoseAdministered:
    """The dose as recorded (`changes` may name any of its fields, the vaccinator's too)."""
    return DoseAdministered(**{"vaccinator_id": "v1", **dose_record(**changes)})


def corrected(*, reason: str = "wrong day", **changes: Any) -> DoseCorrected:
    """The whole record as corrected: every field of `administered`'s but the vaccinator."""
    return DoseCorrected(**dose_record(**changes), reason=reason)


def voided(*, reason: str = "entered in error", **changes: Any) -> DoseVoided:
    """The dose entered in error: of the record, the fields a void carries."""
    record = dose_record(**changes)
    return DoseVoided(**{name: record[name] for name in VOID_FIELDS}, reason=reason)
