"""The dashboard page: one self-contained HTML document (inline CSS, JS and SVG).

The district map's outlines are drawn here, once at start-up (geo.py); the page's
script fetches the JSON API of this service (same origin) and colours, charts
and tabulates what it gets, again whenever a filter changes. Nothing is loaded
from anywhere else. Operational tables (stock, bookings, safety) need a token:
the page takes one from `#token=<jwt>` (kept in sessionStorage, never in a URL
sent to a server) or from its sign-in button.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from immunreg.reference.geography import age_bands, districts
from immunreg.reference.vaccines import vaccine_catalog

from .dashboard_strings import messages
from .geo import DistrictMap

TEMPLATE = Path(__file__).with_name("dashboard.html")


def map_svg(district_map: DistrictMap) -> str:
    """The map as inline SVG: one focusable path per district, labels added by the script."""
    paths = []
    for shape in district_map.shapes:
        label = html.escape(shape.name)
        if shape.code is None:
            paths.append(
                f'<path class="district nodata" d="{shape.d}" data-name="{label}">'
                f"<title>{label}: no 2022 census data</title></path>"
            )
        else:
            paths.append(
                f'<path class="district" tabindex="0" role="button" d="{shape.d}" '
                f'data-code="{shape.code}" data-name="{label}" '
                f'data-cx="{shape.cx:g}" data-cy="{shape.cy:g}" aria-label="{label}">'
                f"<title>{label}</title></path>"
            )
    return (
        f'<svg id="map" class="map {district_map.kind}" '
        f'viewBox="0 0 {district_map.width:g} {district_map.height:g}" role="group" '
        f'aria-label="Districts of Serbia shaded by coverage">'
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f3f4f6"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#c9ced6" stroke-width="2"/></pattern></defs>'
        + "".join(paths)
        + '<g id="map-labels" aria-hidden="true"></g></svg>'
    )


def page_config(district_map: DistrictMap) -> dict[str, object]:
    """What the script needs to know that is not in the API's answers."""
    return {
        "products": [
            {"code": p.product_code, "name": p.name} for p in vaccine_catalog().products.values()
        ],
        "age_bands": [b.label for b in age_bands()],
        "districts": {code: d.name for code, d in districts().items()},
        "map": {"kind": district_map.kind, "note": district_map.note},
        "messages": messages(),
    }


def render_dashboard(district_map: DistrictMap) -> bytes:
    """The page, ready to serve."""
    config = json.dumps(page_config(district_map), ensure_ascii=False).replace("</", "<\\/")
    page = (
        TEMPLATE.read_text("utf-8")
        .replace("<!--MAP-->", map_svg(district_map))
        .replace("/*CONFIG*/{}", config)
        .replace("<!--MAP-NOTE-->", html.escape(district_map.note))
    )
    return page.encode("utf-8")
