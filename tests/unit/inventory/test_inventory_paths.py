"""Which ids a path may carry, and which shipments site staff may see (pure rules)."""

from __future__ import annotations

import pytest

from services.inventory.domain import (
    is_location_id,
    is_lot_number,
    is_shipment_id,
    may_see_shipment,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("WH-NATIONAL", True),
        ("SITE-0001", True),
        ("A" * 40, True),
        ("A" * 41, False),
        ("site-0001", False),
        ("SITE--1", False),
        ("SITE:1", False),
        ("", False),
    ],
)
def test_a_location_id(value: str, expected: bool) -> None:
    assert is_location_id(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("EW0150", True),
        ("fa.12_3-x", True),
        ("L" * 40, True),
        ("L" * 41, False),
        ("-EW0150", False),
        ("EW/0150", False),
        ("", False),
    ],
)
def test_a_lot_number(value: str, expected: bool) -> None:
    assert is_lot_number(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SH-1", True),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", True),
        ("S" * 64, True),
        ("S" * 65, False),
        (".hidden", False),
        ("SH 1", False),
    ],
)
def test_a_shipment_id(value: str, expected: bool) -> None:
    assert is_shipment_id(value) is expected


@pytest.mark.parametrize(
    ("site_staff", "site_id", "expected"),
    [
        (True, "SITE-A", True),  # it leaves from their site
        (True, "SITE-B", True),  # it arrives at their site
        (True, "SITE-C", False),
        (True, None, False),  # staff bound to no site see none
        (False, None, True),  # logistics, public health and admins see all
        (False, "SITE-C", True),
    ],
)
def test_site_staff_see_only_their_own_sites_shipments(
    site_staff: bool, site_id: str | None, expected: bool
) -> None:
    seen = may_see_shipment(
        site_staff=site_staff, site_id=site_id, from_location="SITE-A", to_location="SITE-B"
    )
    assert seen is expected
