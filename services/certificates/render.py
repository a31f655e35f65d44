"""What a citizen takes away: the QR code (PNG, SVG) and a printable page.

QR codes by zxing-cpp (compiled: pure-Python segno drew 6-20 a second per core,
too slow for a national download day), error correction level Q as the EU DCC
technical specification recommends, with the 4-module quiet zone. A certificate's QR
code is encoded once (`qr_matrix`, most of the cost) and both images are drawn from
its modules: the PNG written directly as 1-bit scanlines, the SVG as one path. The
page is plain HTML: names, birth date, the vaccination, the UVCI and the QR
as inline SVG, laid out for A4 with CSS `@media print`. Everything shown
comes from the signed payload, so the page says what the QR says.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import zxingcpp

from immunreg.reference.vaccines import vaccine_catalog

from .cose import decode_claims, decode_hc1

QR_ERROR = "Q"
_CYRILLIC_TITLE = "Сертификат о вакцинацији"  # noqa: RUF001 (Serbian Cyrillic)
PNG_SCALE = 4
SVG_SCALE = 4
QUIET_ZONE = 4  # modules of white around the code, as ISO/IEC 18004 asks
QR_TITLE = "EU Digital COVID Certificate"
_DARK = 0  # zxing-cpp's image: 0 dark, 255 light
_RUNS = re.compile(b"\x00+")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class QrMatrix:
    """A QR code's modules, encoded once and drawn in every format from here: `size` rows
    of `size` bytes (0 dark, 255 light), row by row, without the quiet zone."""

    size: int
    modules: bytes

    def row(self, y: int) -> bytes:
        """The modules of row `y`."""
        return self.modules[y * self.size : (y + 1) * self.size]


def qr_matrix(hc1: str) -> QrMatrix:
    """Encode the certificate as a QR code (the costly part: drawing is cheap after it)."""
    barcode = zxingcpp.create_barcode(hc1, zxingcpp.BarcodeFormat.QRCode, ec_level=QR_ERROR)
    image = barcode.to_image(scale=1, add_quiet_zones=False)
    # zxingcpp.Image is a buffer of 8-bit grey pixels; its type stub does not declare it.
    return QrMatrix(int(image.shape[0]), bytes(memoryview(image)))  # type: ignore[arg-type]


def qr_modules(hc1: str) -> int:
    """The QR code's width in modules, without the quiet zone (17 + 4 x its version)."""
    return qr_matrix(hc1).size


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of(matrix: QrMatrix, scale: int = PNG_SCALE) -> bytes:
    """The QR code as a 1-bit greyscale PNG, `scale` pixels a module, with the quiet zone.

    Written straight from the modules: a module row is one scanline repeated `scale`
    times, each module `scale` bits (0 dark, 1 light); no image library in between."""
    width = (matrix.size + 2 * QUIET_ZONE) * scale
    padding = -width % 8
    light, dark = b"1" * scale, b"0" * scale
    margin = light * QUIET_ZONE

    def scanline(modules: bytes) -> bytes:
        bits = margin + modules.replace(b"\xff", light).replace(b"\x00", dark) + margin
        packed = int(bits + b"1" * padding, 2).to_bytes((width + padding) // 8, "big")
        return b"\x00" + packed  # filter type 0: the bytes as they are

    blank = scanline(b"\xff" * matrix.size)
    rows = [blank * (QUIET_ZONE * scale)]
    rows.extend(scanline(matrix.row(y)) * scale for y in range(matrix.size))
    rows.append(blank * (QUIET_ZONE * scale))
    header = struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    # A QR compresses well at zlib's fastest level; the default level costs about twice
    # the time for a few per cent of size.
    pixels = zlib.compress(b"".join(rows), 1)
    return b"".join(
        [_PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", pixels), _chunk(b"IEND", b"")]
    )


def _svg_element(matrix: QrMatrix, scale: int) -> str:
    """The QR code's <svg> element (no XML declaration), titled for screen readers: one
    path, a stroke one module wide along each row's dark runs, in module units (the
    viewBox scales it)."""
    side = matrix.size + 2 * QUIET_ZONE
    runs = [
        f"M{run.start() + QUIET_ZONE} {y}.5h{run.end() - run.start()}"
        for y in range(QUIET_ZONE, matrix.size + QUIET_ZONE)
        for run in _RUNS.finditer(matrix.row(y - QUIET_ZONE))
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{side * scale}" '
        f'height="{side * scale}" viewBox="0 0 {side} {side}" shape-rendering="crispEdges">'
        f'<title>{QR_TITLE}</title><rect width="{side}" height="{side}" fill="#FFFFFF"/>'
        f'<path stroke="#000000" stroke-width="1" d="{"".join(runs)}"/></svg>'
    )


def svg_of(matrix: QrMatrix, scale: int = SVG_SCALE) -> bytes:
    """The QR code as an SVG document."""
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + _svg_element(matrix, scale)).encode()


class QrImages(NamedTuple):
    """A certificate's QR code as stored: PNG and SVG."""

    png: bytes
    svg: bytes


def qr_images(hc1: str) -> QrImages:
    """The certificate's QR code as PNG and SVG, encoded once."""
    matrix = qr_matrix(hc1)
    return QrImages(png_of(matrix), svg_of(matrix))


def qr_png(hc1: str, scale: int = PNG_SCALE) -> bytes:
    """The certificate as a PNG QR code (1 bit per pixel)."""
    return png_of(qr_matrix(hc1), scale)


def qr_svg(hc1: str, scale: int = SVG_SCALE) -> bytes:
    """The certificate as an SVG QR code (a standalone document)."""
    return svg_of(qr_matrix(hc1), scale)


def svg_element(svg: bytes) -> str:
    """A stored SVG document as the element a page inlines (its XML declaration dropped)."""
    text = svg.decode()
    return text[text.index("<svg") :]


def payload_of(hc1: str) -> dict[str, Any]:
    """The health certificate a stored HC1 carries (decoded, not verified: it is ours)."""
    return decode_claims(decode_hc1(hc1)).hcert


_STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111; }
body { max-width: 46rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.4; }
header { border-bottom: 3px solid #003399; margin-bottom: 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
.sub { color: #444; margin: 0 0 .75rem; }
.grid { display: grid; grid-template-columns: 1fr auto; gap: 1.5rem; align-items: start; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; margin: 0; }
dt { font-weight: 600; color: #333; }
dd { margin: 0; }
.qr svg { width: 18rem; height: auto; display: block; }
.uvci { font-family: ui-monospace, monospace; font-size: .85rem; word-break: break-all; }
.status { padding: .5rem .75rem; border-radius: .25rem; font-weight: 700; margin: 1rem 0; }
.valid { background: #e6f4ea; color: #135c2a; }
.revoked { background: #fdecea; color: #8a1c12; }
footer { margin-top: 1.5rem; font-size: .8rem; color: #555; }
@media print {
  @page { size: A4; margin: 15mm; }
  body { margin: 0; max-width: none; }
  .qr svg { width: 70mm; }
  .status.valid { display: none; }
}
"""


def _row(label: str, value: object) -> str:
    return f"<dt>{html.escape(label)}</dt><dd>{html.escape(str(value))}</dd>"


def print_page(
    hc1: str,
    *,
    status: str,
    revocation_reason: str | None,
    issued_at: datetime,
    expires_at: datetime,
    stored_svg: bytes | None = None,
) -> str:
    """The printable page of one certificate (UTF-8 HTML). Its QR code is the SVG stored
    with the certificate at issue when there is one (encoding is most of a page's cost);
    a certificate kept from before images were stored has its QR encoded here."""
    payload = payload_of(hc1)
    names = payload.get("nam", {})
    [vaccination] = payload["v"]
    product = vaccine_catalog().get(vaccination["mp"])
    product_name = product.name if product else vaccination["mp"]
    manufacturer = product.manufacturer_name if product else vaccination["ma"]
    full_name = " ".join(filter(None, [names.get("gn"), names.get("fn")]))
    standard = " ".join(filter(None, [names.get("gnt"), names.get("fnt")]))
    qr = svg_element(stored_svg) if stored_svg else _svg_element(qr_matrix(hc1), SVG_SCALE)
    if status == "valid":
        banner = '<p class="status valid">Valid certificate</p>'
    else:
        reason = (revocation_reason or "").replace("_", " ")
        banner = f'<p class="status revoked">REVOKED ({html.escape(reason)}) - not valid</p>'
    rows = "".join(
        [
            _row("Name", full_name),
            _row("Standardised name", standard),
            _row("Date of birth", payload.get("dob", "")),
            _row("Disease", "COVID-19"),
            _row("Vaccine", product_name),
            _row("Manufacturer", manufacturer),
            _row("Dose", f"{vaccination['dn']} of {vaccination['sd']}"),
            _row("Date of vaccination", vaccination["dt"]),
            _row("Country of vaccination", vaccination["co"]),
            _row("Issued by", vaccination["is"]),
            _row("Issued", issued_at.date().isoformat()),
            _row("Valid until", expires_at.date().isoformat()),
        ]
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Vaccination certificate - {html.escape(full_name)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>EU Digital COVID Certificate - Vaccination</h1>
<p class="sub">Sertifikat o vakcinaciji / {_CYRILLIC_TITLE}</p>
</header>
{banner}
<div class="grid">
<dl>{rows}</dl>
<div class="qr">{qr}</div>
</div>
<p>Certificate identifier: <span class="uvci">{html.escape(vaccination["ci"])}</span></p>
<footer>Scan the QR code with any EU DCC verifier app. Verify online:
POST /v1/verify; signer keys: GET /v1/trust-list.</footer>
</body>
</html>
"""
