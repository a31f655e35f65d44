"""The rules that say what certificate a dose should have (domain.certificate_due) and how
long a new one is valid (domain.issuance): pure, over what is known of the dose."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from services.certificates.domain import (
    CITIZEN_ERASED,
    DOSE_CORRECTED,
    DOSE_NUMBERS_NOT_ENCODABLE,
    DOSE_VOIDED,
    LOT_RECALLED,
    PRODUCT_OUTSIDE_CATALOG,
    Content,
    DoseFacts,
    certificate_due,
    issuance,
)

BELGRADE = ZoneInfo("Europe/Belgrade")
DOSE = DoseFacts(
    dose_id="d1",
    citizen_id="c1",
    product_code="EU/1/20/1528",
    dose_number=1,
    series_length=2,
    administered_at=datetime(2021, 5, 31, 22, 30, tzinfo=UTC),  # 1 June in Belgrade
)


def test_a_dose_on_file_is_due_its_certificate_dated_where_it_was_given() -> None:
    due = certificate_due(DOSE, BELGRADE)
    assert due.content == Content(
        citizen_id="c1",
        product_code="EU/1/20/1528",
        dose_number=1,
        total_doses=2,
        vaccination_date=date(2021, 6, 1),
    )
    assert due.reason == DOSE_CORRECTED
    assert due.unissuable is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"voided": True}, DOSE_VOIDED),
        ({"recalled": True}, LOT_RECALLED),
        ({"erased": True}, CITIZEN_ERASED),
        # a voided dose names the reason even when its lot was recalled and its holder erased
        ({"voided": True, "recalled": True, "erased": True}, DOSE_VOIDED),
        ({"recalled": True, "erased": True}, LOT_RECALLED),
    ],
)
def test_void_recall_and_erasure_leave_no_certificate_and_name_why(
    changes: dict[str, bool], reason: str
) -> None:
    due = certificate_due(msgspec.structs.replace(DOSE, **changes), BELGRADE)
    assert due.content is None
    assert due.reason == reason
    assert due.unissuable is None


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"product_code": "not-in-the-catalog"}, PRODUCT_OUTSIDE_CATALOG),
        ({"dose_number": 0}, DOSE_NUMBERS_NOT_ENCODABLE),
        ({"series_length": 0}, DOSE_NUMBERS_NOT_ENCODABLE),
    ],
)
def test_a_dose_no_dcc_can_encode_has_none(changes: dict[str, object], why: str) -> None:
    due = certificate_due(msgspec.structs.replace(DOSE, **changes), BELGRADE)
    assert due.content is None
    assert due.reason == DOSE_CORRECTED
    assert due.unissuable == why


def test_a_certificate_never_outlives_its_signer() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    within = issuance(
        uvci="U",
        now=now,
        validity=timedelta(days=365),
        signer_expires=now + timedelta(days=30),
        key_id="k",
        country="RS",
    )
    assert within.issued_at == now.replace(microsecond=0)
    assert within.expires_at == (now + timedelta(days=30)).replace(microsecond=0)
    full = issuance(
        uvci="U",
        now=now,
        validity=timedelta(days=365),
        signer_expires=now + timedelta(days=3650),
        key_id="k",
        country="RS",
    )
    assert full.expires_at == (now + timedelta(days=365)).replace(microsecond=0)
