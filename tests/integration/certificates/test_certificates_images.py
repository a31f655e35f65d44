"""QR images rendered once, kept with the certificate and served from there: real
PostgreSQL, real Kafka."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import zxingcpp
from PIL import Image

from services.certificates import render

from .conftest import Certificates, eventually, quoted

RENDERED = "immunreg_certificates_qr_rendered_total{"
IMAGES = "SELECT qr_png, qr_svg FROM certificates WHERE uvci = $1 AND qr_png IS NOT NULL"


def scanned(png: bytes) -> str:
    """What a scanner reads in the image."""
    [found] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return str(found.text)


async def stored_images(certificates: Certificates, uvci: str) -> tuple[bytes, bytes]:
    """The certificate's images, stored with it (no waiting: they come with the row)."""
    row = await certificates.pool.fetchrow(IMAGES, uvci)
    assert row is not None, f"{uvci} has no images stored"
    return bytes(row["qr_png"]), bytes(row["qr_svg"])


async def renders(certificates: Certificates) -> float:
    """How many certificates the app has rendered images for, by anyone."""
    metrics = await (await certificates.client.get("/metrics")).text()
    lines = [line for line in metrics.splitlines() if line.startswith(RENDERED)]
    return sum(float(line.split()[-1]) for line in lines)


async def caught_up(certificates: Certificates) -> None:
    """Wait until no certificate with an HC1 lacks its images."""
    await eventually(
        lambda: certificates.pool.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM certificates WHERE hc1 IS NOT NULL "
            "AND (qr_png IS NULL OR qr_svg IS NULL))"
        ),
        "every certificate has its images",
    )


async def issued(certificates: Certificates) -> dict[str, Any]:
    """A new citizen's certificate for their first dose."""
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    await certificates.administer(certificates.new_dose(citizen))
    [cert] = await certificates.certificates_of(citizen.citizen_id, 1, valid=1)
    return cert


async def test_an_issued_certificate_gets_its_images_stored_and_served_from_there(
    certificates: Certificates,
) -> None:
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    dose = certificates.new_dose(citizen, dose_number=1)
    await certificates.administer(dose)
    [cert] = await certificates.certificates_of(citizen.citizen_id, 1, valid=1)

    # Nobody downloaded it: it was kept with both images, rendered as it was issued.
    png, svg = await stored_images(certificates, cert["uvci"])
    assert (png, svg) == (render.qr_png(cert["hc1"]), render.qr_svg(cert["hc1"]))
    assert scanned(png) == cert["hc1"]
    own = certificates.citizen_token(citizen.citizen_id)
    path = f"/v1/certificates/{quoted(cert['uvci'])}"
    served_png = await certificates.get(f"{path}/qr.png", own)
    assert (served_png.status, await served_png.read()) == (200, png)
    served_svg = await certificates.get(f"{path}/qr.svg", own)
    assert (served_svg.status, await served_svg.read()) == (200, svg)
    held = {**own, "If-None-Match": served_png.headers["ETag"]}
    assert (await certificates.get(f"{path}/qr.png", held)).status == 304

    # A re-issue is a new certificate with an image of its own; the old one keeps its own.
    await certificates.correct(dataclasses.replace(dose, dose_number=2))
    newest, old = await certificates.certificates_of(citizen.citizen_id, 2, valid=1)
    new_png, _ = await stored_images(certificates, newest["uvci"])
    assert scanned(new_png) == newest["hc1"] != old["hc1"]
    assert (await stored_images(certificates, old["uvci"]))[0] == png


async def test_a_download_before_the_renderer_renders_once_and_stores_it(
    certificates: Certificates,
) -> None:
    cert = await issued(certificates)
    await caught_up(certificates)
    before = await renders(certificates)
    # As if issued before images were rendered at issue: whichever comes first, a download
    # or the renderer, renders it; the other finds it stored.
    await certificates.pool.execute(
        "UPDATE certificates SET qr_png = NULL, qr_svg = NULL WHERE uvci = $1", cert["uvci"]
    )
    path = f"/v1/certificates/{quoted(cert['uvci'])}"
    first = await certificates.get(f"{path}/qr.png")
    second = await certificates.get(f"{path}/qr.png")
    svg = await certificates.get(f"{path}/qr.svg")
    assert (first.status, second.status, svg.status) == (200, 200, 200)
    body = await first.read()
    assert body == await second.read() == render.qr_png(cert["hc1"])
    assert await svg.read() == render.qr_svg(cert["hc1"])
    assert scanned(body) == cert["hc1"]
    assert (await stored_images(certificates, cert["uvci"]))[0] == body
    await caught_up(certificates)
    assert await renders(certificates) == before + 1


async def test_the_printable_page_shows_the_stored_qr_and_encodes_it_for_older_rows(
    certificates: Certificates,
) -> None:
    cert = await issued(certificates)
    _, svg = await stored_images(certificates, cert["uvci"])
    # Marked, so the page shows which image it took: the stored one, not encoded again.
    marked = svg.replace(b"<title>", b"<title>(stored) ")
    await certificates.pool.execute(
        "UPDATE certificates SET qr_svg = $2 WHERE uvci = $1", cert["uvci"], marked
    )
    path = f"/v1/certificates/{quoted(cert['uvci'])}/print"
    page = await certificates.get(path)
    assert page.status == 200
    assert render.svg_element(marked) in await page.text()

    # A certificate kept from before images were stored: its QR encoded for the page.
    await certificates.pool.execute(
        "UPDATE certificates SET qr_png = NULL, qr_svg = NULL WHERE uvci = $1", cert["uvci"]
    )
    older = await certificates.get(path)
    assert older.status == 200
    assert render.svg_element(svg) in await older.text()
