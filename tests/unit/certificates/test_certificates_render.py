"""QR codes and the printable page."""

from __future__ import annotations

import io
import re
import struct
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from functools import partial

import zxingcpp
from certificates_support import payload
from PIL import Image

from conftest import Sign
from immunreg.reference.vaccines import vaccine_catalog
from services.certificates.hcert import Holder, Vaccination, build_payload
from services.certificates.render import (
    QUIET_ZONE,
    payload_of,
    print_page,
    qr_images,
    qr_matrix,
    qr_modules,
    qr_png,
    qr_svg,
)

AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_png_is_a_png_that_reads_back_as_the_certificate_at_level_q(sign: Sign) -> None:
    hc1 = sign()
    png = qr_png(hc1)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert width == height == 4 * (qr_modules(hc1) + 8)  # scale 4, 4-module quiet zone
    assert qr_modules(hc1) >= 57  # version >= 10: an HC1 is several hundred characters
    # A scanner (zxing-cpp's reader, independent of how the image was drawn) reads it.
    [found] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert found.text == hc1 and found.ec_level == "Q"


def test_svg_is_a_titled_svg(sign: Sign) -> None:
    root = ET.fromstring(qr_svg(sign()))
    assert root.tag.endswith("svg")
    [title] = [e for e in root if e.tag.endswith("title")]
    assert title.text == "EU Digital COVID Certificate"


def drawn(svg: bytes) -> Image.Image:
    """The SVG's path painted one pixel a module, times 4 (its runs: `Mx y.5hN`)."""
    root = ET.fromstring(svg)
    side = int(root.attrib["viewBox"].split()[2])
    [path] = [e for e in root if e.tag.endswith("path")]
    assert path.attrib["stroke-width"] == "1"
    picture = Image.new("L", (side, side), 255)
    for x, y, length in re.findall(r"M(\d+) (\d+)\.5h(\d+)", path.attrib["d"]):
        for dx in range(int(length)):
            picture.putpixel((int(x) + dx, int(y)), 0)
    assert re.sub(r"M\d+ \d+\.5h\d+", "", path.attrib["d"]) == ""  # nothing else drawn
    return picture.resize((side * 4, side * 4), Image.Resampling.NEAREST)


def test_both_images_are_drawn_from_one_encoding_and_read_back(sign: Sign) -> None:
    hc1 = sign()
    png, svg = qr_images(hc1)
    assert (png, svg) == (qr_png(hc1), qr_svg(hc1))
    from_png = Image.open(io.BytesIO(png)).convert("L")
    from_svg = drawn(svg)
    assert from_svg.size == from_png.size
    assert from_svg.tobytes() == from_png.tobytes()  # the same modules, pixel for pixel
    [found] = zxingcpp.read_barcodes(from_svg)
    assert found.text == hc1
    # The modules without the quiet zone, as zxing-cpp encodes them.
    matrix = qr_matrix(hc1)
    corner = from_png.resize((matrix.size + 2 * QUIET_ZONE,) * 2, Image.Resampling.NEAREST)
    assert corner.crop((4, 4, 4 + matrix.size, 4 + matrix.size)).tobytes() == matrix.modules


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


def test_the_page_inlines_the_stored_qr_and_encodes_only_without_one(sign: Sign) -> None:
    hc1 = sign()
    page_of = partial(
        print_page, hc1, status="valid", revocation_reason=None, issued_at=AT, expires_at=AT
    )
    # The SVG stored at issue is the very image the page would encode: the same page.
    assert page_of(stored_svg=qr_svg(hc1)) == page_of()
    # What is stored is what is shown, without its XML declaration.
    stored = qr_svg(hc1).replace(b"<title>", b"<title>(stored) ")
    page = page_of(stored_svg=stored)
    assert "<title>(stored) EU Digital COVID Certificate</title>" in page
    assert "<?xml" not in page and page.count("<svg") == 1
