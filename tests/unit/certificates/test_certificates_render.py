"""QR codes and the printable page."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

from certificates_support import payload

from conftest import Sign
from immunreg.reference.vaccines import vaccine_catalog
from services.certificates.hcert import Holder, Vaccination, build_payload
from services.certificates.render import payload_of, print_page, qr_png, qr_svg

AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_png_is_a_png(sign: Sign) -> None:
    png = qr_png(sign())
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert width == height and width >= 4 * (57 + 8)  # version >= 10 at scale 4, quiet zone


def test_svg_is_an_svg(sign: Sign) -> None:
    root = ET.fromstring(qr_svg(sign()))
    assert root.tag.endswith("svg")


def test_the_page_shows_what_the_qr_says_and_escapes_it(sign: Sign) -> None:
    [v] = payload()["v"]
    hcert = build_payload(
        Holder(family_name="<script>x</script>", given_name="Jelena", birth_date=date(1985, 4, 12)),
        Vaccination(
            product=vaccine_catalog()["EU/1/20/1528"],
            dose_number=2,
            total_doses=2,
            vaccination_date=date(2021, 6, 1),
            country="RS",
            issuer=v["is"],
            uvci=v["ci"],
        ),
    )
    hc1 = sign(hcert)
    assert payload_of(hc1) == hcert
    page = print_page(hc1, status="valid", revocation_reason=None, issued_at=AT, expires_at=AT)
    assert "<script>" not in page and "&lt;script&gt;" in page
    for text in ["Jelena", "1985-04-12", "Comirnaty", "2 of 2", "2021-06-01", v["ci"], "<svg"]:
        assert text in page
    assert "@media print" in page and "Valid certificate" in page
    revoked = print_page(
        hc1, status="revoked", revocation_reason="dose_voided", issued_at=AT, expires_at=AT
    )
    assert "REVOKED (dose voided)" in revoked
